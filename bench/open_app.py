"""Minimal ASGI app exposing the open-edition engine over HTTP, for bench/bench_open.py only.

The headline figures come from the gateway's real routes (`pdg serve`); this app keeps just the engine
calls (no auth, rate limits, policy decision, audit or middleware), so `bench_open.py --engine-app`
shows what catalog.reader / catalog.streaming cost alone: a lower bound, and the price of the layers.

  OPEN_DATASETS='people=/tmp/openbench/pop.parquet,big=/tmp/openbench/pop10m.parquet' \
  uvicorn bench.open_app:app --host 127.0.0.1 --port 8002 --workers 2

Paths: /open/{name}.json?<reader syntax>  (envelope: data, links.next, meta)  and /open/{name}.csv
"""

from __future__ import annotations

import json
import os
import urllib.parse

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from catalog import reader, streaming
from common.errors import DomainError, NotFound

KEY = os.environ.get("OPEN_CURSOR_KEY", "bench-only-cursor-key-0123456789").encode()
DATASETS = dict(item.split("=", 1) for item in os.environ.get("OPEN_DATASETS", "").split(",") if "=" in item)

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def _problem(exc: DomainError) -> Response:
    body = {"type": exc.type_slug, "title": exc.title, "status": exc.status, "detail": exc.detail}
    return Response(json.dumps(body), status_code=exc.status, media_type="application/problem+json")


def _path(name: str) -> str:
    if name not in DATASETS:
        raise NotFound("no such dataset")
    return DATASETS[name]


@app.get("/open/{name}.json")
async def rows(name: str, request: Request) -> Response:
    # async on purpose: a page is a ~0.5 ms SQLite seek, cheaper than a thread-pool hop
    try:
        path = _path(name)
        items = request.query_params.multi_items()
        query = reader.parse_query(items, reader.columns_of(path))
        page = reader.read_rows(path, query, cursor_key=KEY, version=f"{name}/1")
    except DomainError as exc:
        return _problem(exc)
    nxt = None
    if page.next_cursor:
        kept = [(k, v) for k, v in items if k != "_cursor"] + [("_cursor", page.next_cursor)]
        nxt = f"/open/{name}.json?{urllib.parse.urlencode(kept)}"
    meta = dict(page.meta, **({"total": page.total} if page.total is not None else {}))
    body = {"data": page.data, "links": {"next": nxt}, "meta": meta}
    return Response(json.dumps(body, ensure_ascii=False).encode(), media_type="application/json")


@app.get("/open/{name}.csv")
def csv(name: str, bom: int = 0, encoding: str = "utf-8") -> Response:
    try:
        batches = streaming.iter_batches(_path(name))
        totals = streaming.StreamTotals()
        body = streaming.csv_stream(batches, totals, bom=bool(bom), encoding=encoding)
        first = next(body)  # surface errors before the 200 is sent
    except DomainError as exc:
        return _problem(exc)

    def rest():
        yield first
        yield from body

    return StreamingResponse(rest(), media_type="text/csv; charset=utf-8")
