"""Open data: rows of the open edition and streamed downloads (CSV, NDJSON, Parquet)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from catalog import opendata, streaming
from gateway import metrics
from gateway.db import unit_of_work
from gateway.deps import CtxDep
from gateway.fastjson import json_response
from policies.guard import record_entry

router = APIRouter()
log = logging.getLogger("pdg.open")

_MEDIA = {"csv": "text/csv", "ndjson": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


@router.get(
    "/datasets/{code}/rows",
    summary="Rows of the open edition: filters, sort, fields, keyset pages",
    description="Filters: `field=v`, `field__ne|in|lt|lte|gt|gte|prefix|isnull|notnull=v`; "
    "`_sort=-a,b`, `_fields=a,b`, `_size` (max 1000), `_cursor` (from links.next), `_count=1`.",
    response_model=dict[str, Any],
)
def rows(code: str, request: Request, c: CtxDep) -> Response:
    with c.uow(read=True) as s:
        page = opendata.rows(
            s,
            actor=c.actor,
            code=code,
            params=list(request.query_params.multi_items()),
            data_dir=c.state.data_dir,
            cursor_key=c.state.secret_key,
            max_size=c.state.settings.limits.page_size_max,
        )
    metrics.ROWS_SERVED.labels("json").inc(len(page.data))
    next_link = None
    if page.next_cursor:
        next_link = str(request.url.remove_query_params("_cursor").include_query_params(_cursor=page.next_cursor))
    meta = {**page.meta, "dataset": code}
    if page.total is not None:
        meta["total"] = page.total
    # Rows are plain values: encoded directly, not walked value by value by FastAPI's encoder.
    return json_response({"data": page.data, "links": {"self": str(request.url), "next": next_link}, "meta": meta})


class _ClosingStream(StreamingResponse):
    """A streamed body whose generator is closed as soon as the response ends, however it ends.

    Starlette drops a sync body when the client hangs up and leaves it to the garbage collector; the
    generator's `finally` (which writes the download's audit record) then ran whenever the collector got
    to it, or never if the process stopped first. Closed here, on a thread (the record waits for its
    commit), shielded from the cancellation that ended the response.
    """

    def __init__(self, content: Iterator[bytes], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._source = content

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._source.close)  # type: ignore[attr-defined]


@router.get(
    "/datasets/{code}/download.{fmt}",
    summary="Download the whole open edition, streamed",
    response_class=Response,
    description="CSV (`bom=true` for Excel, `encoding=gbk|gb18030`), NDJSON or Parquet (Range supported). "
    "ETag/Last-Modified with 304.",
)
def download(
    code: str,
    fmt: Literal["csv", "ndjson", "parquet"],
    c: CtxDep,
    bom: bool = False,
    encoding: Annotated[Literal["utf-8", "gbk", "gb18030"], Query()] = "utf-8",
    if_none_match: Annotated[str | None, Header()] = None,
    if_modified_since: Annotated[str | None, Header()] = None,
    range_: Annotated[str | None, Header(alias="range")] = None,
    if_range: Annotated[str | None, Header()] = None,
) -> Response:
    with c.uow(read=True) as s:
        edition, entry = opendata.download(s, actor=c.actor, code=code, data_dir=c.state.data_dir)
    variant = fmt if fmt != "csv" else f"csv-{encoding}{'-bom' if bom else ''}"
    tag = streaming.etag(edition.digest, variant)
    headers = {
        "ETag": tag,
        "Last-Modified": streaming.http_date(edition.published),
        "Cache-Control": "public, max-age=300",
        "Content-Disposition": f'attachment; filename="{code}-v{edition.version}.{fmt}"',
    }
    if streaming.not_modified(tag, edition.published, if_none_match=if_none_match, if_modified_since=if_modified_since):
        return Response(status_code=304, headers=headers)
    engine = c.state.engine
    totals = streaming.StreamTotals()

    def record(t: streaming.StreamTotals) -> None:
        try:
            with unit_of_work(engine, read=True) as s:  # appended by the group committer
                record_entry(
                    s,
                    entry,
                    dataset_version=edition.version,
                    outcome={"format": fmt, "rows": t.rows, "bytes": t.bytes, "completed": t.completed},
                )
        except Exception:  # the client already has its bytes; an audit failure is loud in the logs
            log.exception("could not record a download in the audit log", extra={"dataset": code})

    def on_close(t: streaming.StreamTotals) -> None:  # on a thread: _ClosingStream closes the body there
        metrics.ROWS_SERVED.labels(fmt).inc(t.rows)
        record(t)

    media = _MEDIA[fmt] + ("; charset=" + encoding if fmt == "csv" else "")
    if fmt == "parquet":
        size = edition.path.stat().st_size
        headers["Accept-Ranges"] = "bytes"
        span = (
            streaming.parse_range(range_, size) if streaming.range_applies(if_range, tag, edition.published) else None
        )
        totals.rows = edition.rows if span is None else 0
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            headers["Content-Length"] = str(end - start + 1)
            return _ClosingStream(
                streaming.file_stream(edition.path, totals, start=start, end=end, on_close=on_close),
                status_code=206,
                media_type=media,
                headers=headers,
            )
        headers["Content-Length"] = str(size)
        return _ClosingStream(
            streaming.file_stream(edition.path, totals, on_close=on_close), media_type=media, headers=headers
        )
    batches = streaming.iter_batches(edition.path)
    body = (
        streaming.csv_stream(batches, totals, bom=bom, encoding=encoding, on_close=on_close)
        if fmt == "csv"
        else streaming.ndjson_stream(batches, totals, on_close=on_close)
    )
    return _ClosingStream(body, media_type=media, headers=headers)
