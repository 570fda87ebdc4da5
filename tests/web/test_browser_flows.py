"""The portal in a real browser: each flow a person does, end to end, with screenshots of every page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.sandbox._world import CERT, GEO, POP, register_and_publish

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def city(state: Any, make_principal: Any, tmp_path: Path) -> dict[str, Any]:
    """Departments with published data (population: conditional; points of interest: open), operator, auditor."""
    who = {
        "ga": make_principal("department", org="510100-GA", name="公安局数据专员"),
        "gh": make_principal("department", org="510100-GH", name="规划局数据专员"),
        "operator": make_principal("operator", org="510100-YY", name="运营审核员"),
        "auditor": make_principal("auditor", org="510100-SJ", name="审计员"),
    }
    register_and_publish(state, who["ga"], "population", 200, tmp_path)
    register_and_publish(state, who["gh"], "geospatial", 60, tmp_path, drop=("address",))
    return who


def _nav(b: Any) -> list[str]:
    return [a.inner_text() for a in b.page.locator("header nav a").all()]


def test_public_search_preview_download_and_english(open_browser: Any, city: Any) -> None:
    b = open_browser()
    b.go("/")
    assert b.page.locator("html").get_attribute("lang") == "zh-CN"
    assert _nav(b) == ["数据目录"]  # anonymous: nothing but the catalog
    b.shot("01-catalog-home")
    b.page.get_by_label("搜索").first.fill("兴趣点")
    b.page.get_by_role("button", name="搜索").click()
    assert b.page.locator("article.dataset").count() == 1
    b.page.locator("aside.facets a", has_text="无条件开放").click()
    assert "open_type=unconditional" in b.page.url
    b.shot("02-catalog-search-facet")
    b.page.locator("article.dataset h2 a").first.click()
    assert b.page.url.endswith(f"/datasets/{GEO}")
    preview = b.page.locator("table.preview tbody tr")
    assert preview.count() == 10
    assert "curl -s" in b.page.locator("pre code").first.inner_text()
    b.shot("03-dataset-open")
    with b.page.expect_download() as dl:
        b.page.get_by_role("link", name="CSV", exact=True).click()
    body = Path(dl.value.path()).read_text(encoding="utf-8")
    assert body.splitlines()[0].startswith('"poi_id",') and len(body.splitlines()) == 61
    # A conditional dataset: metadata and dictionary, no rows, the way to apply explained.
    b.go(f"/datasets/{POP}")
    assert b.page.locator("table.preview").count() == 0
    assert "有条件开放" in b.page.content()
    assert b.page.get_by_role("link", name="申请沙箱访问").count() == 0  # the public cannot apply
    b.shot("04-dataset-conditional")
    # English, remembered by a cookie.
    b.go("/?lang=en")
    assert b.page.locator("html").get_attribute("lang") == "en"
    assert b.page.locator("h1").inner_text() == "Public data catalog"
    b.go(f"/datasets/{GEO}")
    assert "Data dictionary" in b.page.content()
    b.shot("05-dataset-english")
    # A missing dataset is a friendly HTML 404, not JSON.
    resp = b.go("/datasets/510100-XX-9999")
    assert resp.status == 404 and "text/html" in resp.headers["content-type"]
    b.shot("06-not-found")


DEFECT_ID = "110101199003070000"  # wrong check digit (should be ...0075-style); GB 11643 rejects it
FIELDS = "\n".join(
    [
        "person_id | 公民身份号码 | string | id_number | ru",
        "gender | 性别 | string | gender | r",
        "district | 区县代码 | string | admin_code | r",
    ]
)


def test_department_registers_publishes_a_defect_reads_the_report(open_browser: Any, city: Any, tmp_path: Path) -> None:
    from catalog import samples

    b = open_browser("department")
    b.sign_in(city["ga"].token)
    assert _nav(b) == ["数据目录", "我的数据集", "登记数据集", "申请审批"]
    b.go("/my/datasets")
    assert POP in b.page.locator("table").inner_text()
    b.shot("10-my-datasets")
    b.go("/datasets/new")
    b.page.get_by_label("数据集编码").fill("510100-RK-0100")
    b.page.get_by_label("名称").fill("街道人口抽样（测试）")
    b.page.get_by_label("数据分类").select_option("population")
    b.page.get_by_label("开放类型").select_option("conditional")
    b.page.get_by_label("共享类型").select_option("conditional")
    b.page.get_by_label("字段（每行一个）").fill(FIELDS)
    b.page.get_by_label("主键字段（可选）").fill("person_id")
    b.shot("11-register")
    b.page.get_by_role("button", name="登记").click()
    assert b.page.url.endswith("/datasets/510100-RK-0100/publish")
    # A file with a defect: one bad ID number on data row 3.
    good = samples.generate("population", 6, seed=3).frame
    rows = ["person_id,gender,district"] + [
        f"{DEFECT_ID if i == 2 else r.person_id},{r.gender},{r.household_address_code}"
        for i, r in enumerate(good.itertuples())
    ]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    b.page.get_by_label("数据文件").set_input_files(str(bad_csv))
    b.page.get_by_role("button", name="上传并发布").click()
    report = b.page.locator("#outcome section.report")
    report.wait_for()
    assert b.page.locator("progress").get_attribute("value") == "100"  # the bar followed the upload
    text = report.inner_text()
    assert "未发布" in text and "不通过" in text
    failing = b.page.locator("tr.fail")
    assert failing.count() >= 1
    assert re.search(r"第 ?3", failing.first.inner_text()), failing.first.inner_text()  # the row number, masked value
    assert DEFECT_ID not in b.page.content()  # the raw value never comes back
    b.shot("12-publish-refused-report")
    # Fixed file: published, and the browser lands on the version's quality report.
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("\n".join(r for i, r in enumerate(rows) if i != 3) + "\n", encoding="utf-8")
    b.page.get_by_label("数据文件").set_input_files(str(fixed))
    b.page.get_by_role("button", name="上传并发布").click()
    b.page.wait_for_url(re.compile(r"/versions/1/quality$"))
    assert "通过" in b.page.locator("section.report").inner_text()
    b.shot("13-quality-report")
    b.go("/datasets/510100-RK-0100/versions")
    assert b.page.locator("tbody tr").count() == 1
    b.shot("14-version-history")
    # Another department's dataset offers no publish button; its publish page is a 403 page.
    b.go(f"/datasets/{GEO}")
    assert b.page.get_by_role("link", name="发布新版本").count() == 0
    resp = b.go(f"/datasets/{GEO}/publish")
    assert resp.status == 403 and "无权访问" in b.page.content()
    b.shot("15-forbidden")


def test_enterprise_applies_department_and_operator_approve_query_export(
    open_browser: Any, city: Any, state: Any
) -> None:
    from gmcrypto.sm2 import PrivateKey

    key = PrivateKey.generate()
    op = open_browser("operator")
    op.sign_in(city["operator"].token)
    op.go("/enterprises")
    op.page.get_by_label("统一社会信用代码 / 编码").fill("91510100WEB")
    op.page.get_by_label("名称", exact=True).fill("网页测试数据科技有限公司")
    op.page.get_by_label("SM2 公钥（PEM）").fill(key.public_key().to_pem().decode())
    op.page.get_by_label("同时创建账号（名称，可选）").fill("分析师")
    op.page.get_by_role("button", name="登记").click()
    token = op.page.locator("#newtok").inner_text().strip()
    assert token.startswith("pdg_")
    op.shot("20-operator-enterprises")

    ent = open_browser("enterprise")
    ent.sign_in(token)
    assert _nav(ent) == ["数据目录", "我的申请", "结果导出"]
    ent.go(f"/datasets/{POP}")
    ent.page.get_by_role("link", name="申请沙箱访问").click()
    ent.page.locator("input[name=columns][value=gender]").check()
    ent.page.locator("input[name=columns][value=household_address_code]").check()
    ent.page.get_by_label("用途代码").fill("district_statistics")
    ent.page.get_by_label("用途说明").fill("按区县和性别统计人口，用于公共服务规划")
    ent.shot("21-apply")
    ent.page.get_by_role("button", name="提交申请").click()
    assert "待部门审批" in ent.page.content()
    ent.shot("22-my-requests")

    dept = open_browser("department")
    dept.sign_in(city["ga"].token)
    dept.go("/requests")
    dept.shot("23-department-approvals")
    dept.page.get_by_role("button", name="批准").click()
    assert "没有待审批的申请" in dept.page.content()

    op.go("/requests")
    # Denying without a reason is refused with an explanation, and nothing changes.
    op.page.get_by_role("button", name="拒绝").click()
    assert "reason" in op.page.content()
    op.go("/requests")
    op.shot("24-operator-approvals")
    op.page.get_by_label("理由").fill("用途明确，字段最小化")
    op.page.get_by_role("button", name="批准").click()

    ent.go("/requests")
    ent.page.get_by_role("link", name="进入工作区").click()
    assert ent.page.locator("textarea#sql").input_value().startswith("SELECT")
    ent.shot("25-workspace")
    ent.page.get_by_label("SQL（仅限一条 SELECT 语句）").fill(
        "SELECT gender, COUNT(*) AS n FROM population GROUP BY gender"
    )
    ent.page.get_by_role("button", name="运行").click()
    ent.page.wait_for_url(re.compile(r"/queries/\d+$"))
    assert "允许输出" in ent.page.locator("main").inner_text()
    ent.shot("26-query-released")
    released = ent.page.url
    # A row-level query is refused by output control, with the reason shown.
    ent.go(f"/workspaces/{_grant_id(ent)}")
    ent.page.get_by_label("SQL（仅限一条 SELECT 语句）").fill("SELECT gender FROM population")
    ent.page.get_by_role("button", name="运行").click()
    ent.page.wait_for_url(re.compile(r"/queries/\d+$"))
    assert "不允许输出" in ent.page.locator("main").inner_text()
    ent.shot("27-query-refused")
    ent.page.goto(released)
    ent.page.get_by_role("button", name=re.compile("导出")).click()
    assert ent.page.url.endswith("/exports")
    ent.shot("28-exports")
    with ent.page.expect_download() as dl:
        ent.page.get_by_role("link", name="下载").first.click()
    import io

    from gmcrypto import package

    out = io.BytesIO()
    package.open_package(dl.value.path(), out, private=key, trusted=state.keyring.public_keys.values())
    assert out.getvalue().decode("utf-8").splitlines()[0].startswith("gender")  # the released counts, decrypted


def _grant_id(b: Any) -> str:
    b.go("/requests")
    href = b.page.get_by_role("link", name="进入工作区").get_attribute("href")
    return href.rsplit("/", 1)[1]


def test_auditor_searches_reads_a_proof_and_verifies_an_export(open_browser: Any, city: Any, tmp_path: Path) -> None:
    pub = open_browser()
    pub.go(f"/datasets/{GEO}")  # something to find: an open read
    a = open_browser("auditor")
    a.sign_in(city["auditor"].token)
    assert _nav(a) == ["数据目录", "日志检索", "风险告警", "校验导出"]
    a.go("/audit")
    a.page.get_by_label("操作").fill("dataset:read_open")
    a.page.get_by_label("决定").select_option("allowed")
    a.page.get_by_role("button", name="搜索").click()
    rows = a.page.locator("main table tbody tr")
    assert rows.count() >= 1 and "dataset:read_open" in rows.first.inner_text()
    a.shot("30-audit-search")
    rows.first.locator("a").first.click()
    assert "尚无覆盖该记录的已签名检查点" in a.page.content()
    seq_url = a.page.url
    a.go("/audit")
    a.page.get_by_role("button", name="立即签署检查点").click()
    assert "已签署新的检查点" in a.page.content()
    a.page.goto(seq_url)
    assert "已验证" in a.page.locator("main").inner_text()
    a.shot("31-audit-record-proof")
    a.go("/audit/alerts")
    a.shot("32-alerts")
    a.go("/audit/verify")
    with a.page.expect_download() as dl:
        a.page.get_by_role("link", name="下载当前日志导出").click()
    export = tmp_path / "export.zip"
    Path(dl.value.path()).replace(export)
    a.page.get_by_label("导出文件（zip）").set_input_files(str(export))
    a.page.get_by_role("button", name="校验").click()
    assert "校验通过" in a.page.locator("main").inner_text()
    a.shot("33-verify-ok")
    # A tampered export fails, naming what is wrong.
    import zipfile

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(export) as zin, zipfile.ZipFile(tampered, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith(".jsonl"):
                data = data.replace(b'"allowed": true', b'"allowed": false', 1).replace(
                    b'"allowed":true', b'"allowed":false', 1
                )
            zout.writestr(item, data)
    a.go("/audit/verify")
    a.page.get_by_label("导出文件（zip）").set_input_files(str(tampered))
    a.page.get_by_role("button", name="校验").click()
    assert "校验失败" in a.page.locator("main").inner_text()
    a.shot("34-verify-tampered")
    # The auditor sees no sandbox pages: a friendly 403.
    resp = a.go("/requests")
    assert resp.status == 403


__all__ = ["CERT"]
