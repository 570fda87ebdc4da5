"""The embedded demo: organisations and principals of a small city, fresh tokens, the sample libraries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import typer
from sqlmodel import select

import identity
from common.actor import Actor
from gateway.db import make_engine, unit_of_work
from gateway.settings import Settings

# code, name, kind; then the demo principals (role, org, name).
ORGS = [
    ("510100-GA", "成都市公安局", "department"),
    ("510100-SCJG", "成都市市场监督管理局", "department"),
    ("510100-GH", "成都市规划和自然资源局", "department"),
    ("510100-ZWFW", "成都市政务服务管理和网络理政办公室", "department"),
    ("510100-YY", "成都数据集团（授权运营单位）", "operator"),
    ("91510100DEMO", "示例数据科技有限公司", "enterprise"),
    ("510100-SJ", "成都市审计局", "audit_office"),
    ("510100-XXZX", "成都市大数据中心（系统管理）", "admin"),
]
PRINCIPALS = [
    ("admin", "510100-XXZX", "系统管理员"),
    ("department", "510100-GA", "公安局数据专员"),
    ("department", "510100-SCJG", "市场监管局数据专员"),
    ("department", "510100-GH", "规划和自然资源局数据专员"),
    ("department", "510100-ZWFW", "政务服务办数据专员"),
    ("operator", "510100-YY", "运营审核员"),
    ("enterprise", "91510100DEMO", "企业分析师"),
    ("auditor", "510100-SJ", "审计员"),
]


@dataclass
class Bootstrap:
    tokens: list[tuple[str, str, str]]  # role, org, token
    datasets: list[str]


def bootstrap(settings: Settings) -> Bootstrap:
    """Create the demo organisations and principals once; issue fresh 7-day tokens every start."""
    engine = make_engine(settings.db_url)
    system = Actor.system("demo")
    from gateway.state import install_decision_point

    install_decision_point(settings, engine)
    issued: list[tuple[str, str, str]] = []
    with unit_of_work(engine) as s:
        for code, name, kind in ORGS:
            if (
                s.exec(select(identity.Organisation).where(identity.Organisation.code == code)).first()
                is None
            ):
                identity.create_organisation(s, actor=system, code=code, name=name, kind=kind)
        for role, org, name in PRINCIPALS:
            existing = s.exec(select(identity.Principal).where(identity.Principal.name == name)).first()
            if existing is None:
                _, token = identity.create_principal(
                    s, actor=system, org_code=org, role=role, name=name, expires_in=timedelta(days=7)
                )
            else:
                token = identity.issue_token(
                    s, actor=system, principal_code=existing.code, expires_in=timedelta(days=7)
                )
            issued.append((role, org, token))
    datasets = _load_samples(settings, engine)
    engine.dispose()
    return Bootstrap(tokens=issued, datasets=datasets)


def _load_samples(settings: Settings, engine) -> list[str]:
    from catalog import demo_data
    from gateway.state import load_keyring

    return demo_data.load(
        uow=lambda: unit_of_work(engine), data_dir=settings.data_dir, keyring=load_keyring(settings)
    )


def print_banner(settings: Settings, boot: Bootstrap) -> None:
    base = f"http://{settings.host}:{settings.port}"
    typer.echo("", err=True)
    typer.echo("Public Data Gateway (公共数据网关) — embedded demo", err=True)
    typer.echo(f"  portal   {base}/", err=True)
    typer.echo(f"  API docs {base}/docs", err=True)
    typer.echo(f"  health   {base}/health", err=True)
    if boot.datasets:
        typer.echo(f"  sample datasets: {', '.join(boot.datasets)}", err=True)
    typer.echo("  bootstrap tokens (valid 7 days; new ones every start):", err=True)
    for role, org, token in boot.tokens:
        typer.echo(f"    {role:<11} {org:<14} {token}", err=True)
    typer.echo("", err=True)
