"""The portal's contract without a browser: session cookie, CSRF, role navigation, HTML errors, strings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gateway.web import i18n
from gateway.web import session as sess

TEMPLATES = Path(__file__).resolve().parents[2] / "gateway" / "web" / "templates"


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "every form carries a CSRF token"
    return m.group(1)


def _sign_in(client: Any, token: str) -> Any:
    page = client.get("/login")
    return client.post("/login", data={"token": token, "csrf": _csrf(page.text), "next": "/"}, follow_redirects=False)


def test_sign_in_sets_a_sealed_httponly_lax_cookie_without_the_token(client: Any, make_principal: Any) -> None:
    who = make_principal("department", org="510100-GA")
    r = _sign_in(client, who.token)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(sess.COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    assert who.token not in value and who.token.split("_")[1] not in value  # sealed, not signed-in-the-clear
    home = client.get("/")
    assert "登记数据集" in home.text and "退出" in home.text


def test_secure_cookie_when_tls_is_terminated(settings: Any, state: Any) -> None:
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    state.settings = settings.model_copy(update={"tls_terminated": True})
    with TestClient(create_app(state.settings, state=state)) as c:
        cookie = next(x for x in c.get("/login").headers.get_list("set-cookie") if x.startswith(sess.COOKIE))
    assert "Secure" in cookie


def test_a_bad_token_is_refused_on_the_page(client: Any) -> None:
    r = _sign_in(client, "pdg_nothing_here")
    assert r.status_code == 401 and "令牌无效" in r.text and "text/html" in r.headers["content-type"]


def test_forms_without_the_sessions_csrf_token_are_refused(client: Any, make_principal: Any) -> None:
    who = make_principal("department", org="510100-GA")
    _sign_in(client, who.token)
    for data in ({}, {"csrf": "forged"}):
        r = client.post("/datasets/new", data={**data, "code": "510100-X-0001"}, follow_redirects=False)
        assert r.status_code == 403 and "表单已过期" in r.text
    # A token from another session does not pass either.
    other = sess.new_session()
    r = client.post("/logout", data={"csrf": other.csrf}, follow_redirects=False)
    assert r.status_code == 403


def test_sign_out_forgets_the_token(client: Any, make_principal: Any) -> None:
    who = make_principal("auditor", org="510100-SJ")
    _sign_in(client, who.token)
    assert client.get("/audit", follow_redirects=False).status_code == 200
    r = client.post("/logout", data={"csrf": _csrf(client.get("/").text)}, follow_redirects=False)
    assert r.status_code == 303
    r = client.get("/audit", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Faudit"


def test_tampered_or_foreign_cookies_are_anonymous(client: Any, make_principal: Any, state: Any) -> None:
    who = make_principal("auditor", org="510100-SJ")
    forged = sess.seal(sess.new_session(who.token), b"another gateway's secret key....")
    client.cookies.set(sess.COOKIE, forged)
    assert client.get("/audit", follow_redirects=False).status_code == 303
    good = sess.seal(sess.new_session(who.token), state.secret_key)
    client.cookies.set(sess.COOKIE, good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"))
    assert client.get("/audit", follow_redirects=False).status_code == 303
    expired = sess.seal(sess.WebSession(token=who.token, csrf="x", expires=1), state.secret_key)
    client.cookies.set(sess.COOKIE, expired)
    assert client.get("/audit", follow_redirects=False).status_code == 303


def test_navigation_shows_each_role_only_what_it_may_do(client: Any, make_principal: Any) -> None:
    expected = {
        "department": {"/my/datasets", "/datasets/new", "/requests"},
        "operator": {"/requests", "/enterprises", "/exports"},
        "enterprise": {"/requests", "/exports"},
        "auditor": {"/audit", "/audit/alerts", "/audit/verify"},
    }
    every = set().union(*expected.values())
    for role, links in expected.items():
        client.cookies.clear()
        _sign_in(client, make_principal(role).token)
        nav = re.search(r"<nav aria-label[^>]*>(.*?)</nav>", client.get("/").text, re.S)
        assert nav
        hrefs = set(re.findall(r'href="([^"]+)"', nav.group(1)))
        assert links <= hrefs, role
        assert not (every - links - {"/range/scenarios", "/range/experiments"}) & hrefs, role


def test_pages_a_role_may_not_use_are_friendly_403s(client: Any, make_principal: Any) -> None:
    _sign_in(client, make_principal("enterprise").token)
    for path in ("/audit", "/audit/alerts", "/enterprises"):
        r = client.get(path)
        assert r.status_code == 403, path
        assert "text/html" in r.headers["content-type"] and "无权访问" in r.text and "审计日志" in r.text


def test_errors_are_html_with_api_status_codes(client: Any) -> None:
    assert client.get("/datasets/510100-NO-0001").status_code == 404
    r = client.get("/?sort=sideways")
    assert r.status_code == 400 and "<html" in r.text
    r = client.get("/audit/notanumber", follow_redirects=False)
    assert r.status_code in (303, 422)  # anonymous first: sign in


def test_language_switch_is_remembered(client: Any) -> None:
    r = client.get("/?lang=en")
    assert '<html lang="en">' in r.text and "Public data catalog" in r.text
    assert '<html lang="en">' in client.get("/login").text
    assert '<html lang="zh-CN">' in client.get("/login?lang=zh").text


def test_open_redirects_after_sign_in_are_refused(client: Any, make_principal: Any) -> None:
    who = make_principal("auditor")
    page = client.get("/login")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil"):
        r = client.post(
            "/login", data={"token": who.token, "csrf": _csrf(page.text), "next": target}, follow_redirects=False
        )
        assert r.headers["location"] == "/", target
        page = client.get("/login")


def test_every_string_a_template_uses_exists_in_both_languages() -> None:
    used = set()
    for path in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"(?<![\w.])t\('([a-z0-9_.\-]+)'\)", path.read_text(encoding="utf-8")))
    missing = sorted(k for k in used if k not in i18n.STRINGS)
    assert not missing
    assert all(zh and en for zh, en in i18n.STRINGS.values())


def test_session_seal_round_trip_and_tamper() -> None:
    key = b"k" * 32
    s = sess.new_session("pdg_abc_def")
    value = sess.seal(s, key)
    assert sess.unseal(value, key) == s
    assert sess.unseal(value, b"j" * 32) is None
    assert sess.unseal("not base64 !!", key) is None
    assert sess.unseal("A" * 5000, key) is None
    assert sess.csrf_ok(s, s.csrf) and not sess.csrf_ok(s, "") and not sess.csrf_ok(None, s.csrf)


def test_operator_switches_a_scenario_on_and_off_and_sees_experiments(client: Any, make_principal: Any) -> None:
    _sign_in(client, make_principal("operator").token)
    page = client.get("/range/scenarios")
    assert page.status_code == 200
    first = re.search(r'action="/range/scenarios/([^/"]+)/activate"', page.text)
    assert first, "every scenario can be switched on"
    sid = first.group(1)
    r = client.post(
        f"/range/scenarios/{sid}/activate", data={"csrf": _csrf(page.text), "reason": "演练"}, follow_redirects=False
    )
    assert r.status_code == 303
    page = client.get("/range/scenarios")
    assert "生效中" in page.text and f"/range/scenarios/{sid}/deactivate" in page.text
    r = client.post(f"/range/scenarios/{sid}/deactivate", data={"csrf": _csrf(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and "生效中" not in client.get("/range/scenarios").text
    exp = client.get("/range/experiments")
    assert exp.status_code == 200 and 'name="sample"' in exp.text
    assert client.get("/range/experiments/nope").status_code == 404
