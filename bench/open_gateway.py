"""The peer population published through the gateway's real publish path, for bench/bench_open.py.

A fresh gateway data directory (SQLite database, keys) gets one department (510100-GA) and two
unconditionally open datasets registered with the peer table's columns and field tags, then each CSV
goes through `catalog.publish.publish` (ingest, conformance, quality, grade, SM4 at rest from G3,
masked open edition, row store). The open edition is what the public sees, masked as the policies say:

  person_id               id_number    G3 -> partial: first 4 + last 4 kept (`5101**********123X`)
  name                    person_name  G3 -> partial: surname kept (`王**`)
  gender                  gender       G1 -> as is
  birth_date              birth_date   G3 -> year only (`1987`)
  household_address_code  admin_code   G1 -> as is
  phone                   phone        G3 -> partial: first 3 + last 4 (`138****1234`)
  ethnicity, updated_at   plain        G1 -> as is

The 10M dataset is the 1M table repeated, so it is registered without a key (person_id repeats).
Published once per work directory (`published.json` records codes and timings); re-runs reuse it.
Don't start another gateway on the same data directory meanwhile: its start-up recovery clears staging/.

  python bench/open_gateway.py --data-dir /tmp/openbench/gw --csv pop.csv [--csv10 pop10m.csv]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORG = "510100-GA"
CODE_1M = "510100-RK-PEER1M"
CODE_10M = "510100-RK-PEER10M"


def _field(name: str, label: str, typ: str, tag: str, *, required: bool = False, unique: bool = False) -> dict:
    return {"name": name, "label": label, "type": typ, "tag": tag, "required": required, "unique": unique}


def registration(code: str, *, keyed: bool) -> dict:
    fields = [
        _field("person_id", "公民身份号码", "string", "id_number", required=True, unique=keyed),
        _field("name", "姓名", "string", "person_name", required=True),
        _field("gender", "性别", "string", "gender", required=True),
        _field("birth_date", "出生日期", "date", "birth_date", required=True),
        _field("household_address_code", "户籍地行政区划代码", "string", "admin_code", required=True),
        _field("phone", "联系电话", "string", "phone"),
        _field("ethnicity", "民族", "string", "plain"),
        _field("updated_at", "更新时间", "datetime", "plain"),
    ]
    return {
        "code": code,
        "title": f"人口基础信息（对标基准 {code[-3:]}）",
        "description": "../shared/bench/peer/gen_population.py 生成的合成人口表，按字段标签脱敏后无条件开放。",
        "category": "population",
        "keywords": ["人口", "基准"],
        "open_type": "unconditional",
        "share_type": "conditional",
        "fields": fields,
        "key": "person_id" if keyed else None,
    }


def settings_for(data_dir: Path):
    from gateway.settings import Settings

    return Settings(env="development", data_dir=data_dir)


def publish_all(data_dir: Path, csv: Path, csv10: Path | None) -> dict:
    """Publish (once) and return {code: {rows, open_rows, seconds, open_path, ...}}."""
    marker = data_dir / "published.json"
    if marker.exists():
        done = json.loads(marker.read_text())
        if csv10 is None or CODE_10M in done:
            return done
    else:
        done = {}
    sys.path.insert(0, str(ROOT))
    from sqlmodel import select

    import identity
    from catalog import publish, reader, service, storage
    from catalog.models import Dataset
    from catalog.schemas import DatasetCreate
    from common.actor import Actor
    from gateway import server
    from gateway.db import unit_of_work
    from gateway.state import build_state

    settings = settings_for(data_dir)
    server.prepare(settings)  # migrate, as `pdg serve` does before its workers start
    state = build_state(settings)

    def uow():
        return unit_of_work(state.engine)

    system = Actor.system("bench")
    if "principal" not in done:
        with uow() as s:
            identity.create_organisation(s, actor=system, code=ORG, name="成都市公安局（基准）", kind="department")
        with uow() as s:
            p, _token = identity.create_principal(s, actor=system, org_code=ORG, role="department", name="bench")
            done["principal"] = {"code": p.code, "name": p.name}
    actor = Actor(principal=done["principal"]["code"], role="department", org=ORG, name=done["principal"]["name"])
    todo = [(CODE_1M, csv, True)] + ([(CODE_10M, csv10, False)] if csv10 is not None else [])
    for code, path, keyed in todo:
        if code in done:
            continue
        with uow() as s:
            if s.exec(select(Dataset.id).where(Dataset.code == code)).first() is None:  # an earlier run's
                service.register(s, actor=actor, data=DatasetCreate.model_validate(registration(code, keyed=keyed)))
        t0 = time.perf_counter()
        v = publish.publish(
            uow,
            actor=actor,
            code=code,
            upload=publish.Upload(path=path, fmt="csv", encoding="utf-8"),
            data_dir=data_dir,
            keyring=state.keyring,
        )
        publish_s = time.perf_counter() - t0
        open_path = storage.open_path(data_dir, code, v.number)
        # The row store may be built after publish returns (in the background): wait for it here so the
        # first measured request does not pay for it. prepare() returns at once when it is ready.
        t0 = time.perf_counter()
        reader.prepare(open_path)
        with uow() as s:
            grade = service.get(s, code).grade
        done[code] = {
            "version": v.number,
            "rows": v.rows,
            "open_rows": v.open_rows,
            "grade": grade,
            "encrypted": v.encrypted,
            "publish_s": round(publish_s, 1),
            "row_store_wait_s": round(time.perf_counter() - t0, 1),
            "open_parquet_mb": round(open_path.stat().st_size / 1e6, 1),
            "open_path": str(open_path),
        }
        marker.write_text(json.dumps(done, indent=2))
        print(json.dumps({code: done[code]}), file=sys.stderr, flush=True)
    state.engine.dispose()
    return done


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--csv", required=True, type=Path)
    ap.add_argument("--csv10", type=Path)
    a = ap.parse_args()
    print(json.dumps(publish_all(a.data_dir, a.csv, a.csv10), indent=2))


if __name__ == "__main__":
    main()
