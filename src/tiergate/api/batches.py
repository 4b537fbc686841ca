"""/batches: create, retrieve, list (cursor paging, repeated `id=`), cancel.

The router only records intent in the store; the batch runner (batches/runner.py) does the work,
woken at once in this process and found by polling in any other process sharing the database.
"""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from tiergate import ids
from tiergate.api.deps import json_body, parse_as, principal_of, runtime_of
from tiergate.api.files import own_file
from tiergate.api.framing import json_response
from tiergate.batches.formats import decode_cursor, encode_cursor, window_seconds
from tiergate.batches.validate import BATCH_URLS
from tiergate.errors import InvalidRequest, NotFound
from tiergate.schemas.batches import Batch, BatchCreateRequest, BatchList, BatchPaging
from tiergate.store import batches_repo
from tiergate.store.models import BatchJob

router = APIRouter()
ROUTE = "/batches"
DEFAULT_PAGE = 20
MAX_PAGE = 100


def _not_found(batch_id: str) -> NotFound:
    return NotFound(f"No such batch: `{batch_id}`.", param="batch_id", code="batch_not_found")


def _body(row: BatchJob) -> Response:
    return json_response(Batch.of(row).model_dump())


@router.post(ROUTE)
async def create_batch(request: Request) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    body = parse_as(BatchCreateRequest, await json_body(request))
    if body.endpoint not in BATCH_URLS:
        allowed = ", ".join(f"'{u}'" for u in BATCH_URLS)
        raise InvalidRequest(
            f"Invalid value for `endpoint`: {body.endpoint!r}. Supported values are: {allowed}.",
            param="endpoint",
            code="invalid_value",
        )
    window = window_seconds(body.completion_window)
    if window is None:
        raise InvalidRequest(
            f"Invalid value for `completion_window`: {body.completion_window!r}. "
            "Durations from `24h` to `7d` are supported (e.g. `24h`, `48h`, `7d`).",
            param="completion_window",
            code="invalid_value",
        )
    info = await own_file(runtime, principal.project_id, body.input_file_id)
    if info.purpose != "batch":
        raise InvalidRequest(
            f"The file `{info.id}` has purpose {info.purpose!r}; batch input files need purpose 'batch'.",
            param="input_file_id",
            code="invalid_value",
        )
    now = runtime.clock.now()
    row = BatchJob(
        id=ids.batch_id(),
        org_id=principal.org_id,
        org_name=principal.org_name,
        project_id=principal.project_id,
        project_name=principal.project_name,
        key_id=principal.key_id,
        endpoint=body.endpoint,
        input_file_id=info.id,
        completion_window=body.completion_window,
        status="validating",
        created_at=now,
        expires_at=now + window,
        total=0,
        completed=0,
        failed=0,
        metadata_json=orjson.dumps(body.metadata).decode() if body.metadata is not None else None,
    )
    await asyncio.to_thread(batches_repo.create_batch, runtime.sessions, row)
    runtime.wake_batches()
    return _body(row)


@router.get(ROUTE)
async def list_batches(request: Request) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    # `?id=a&id=b` as documented; SDKs may also send `id[]=a` or `id=a,b`.
    params = request.query_params
    wanted = [
        part for raw in (*params.getlist("id"), *params.getlist("id[]")) for part in raw.split(",") if part
    ]
    if wanted:
        rows = await asyncio.to_thread(
            batches_repo.get_batches, runtime.sessions, principal.project_id, wanted
        )
        return json_response(BatchList(data=[Batch.of(r) for r in rows]).model_dump(exclude_none=True))
    before_id = None
    cursor = request.query_params.get("cursor") or request.query_params.get("after")
    if cursor:
        before_id = decode_cursor(cursor) if cursor.startswith("cursor_") else cursor
        if before_id is None:
            raise InvalidRequest("Invalid value for `cursor`.", param="cursor", code="invalid_value")
    limit = _limit(request.query_params.get("limit"))
    rows, more = await asyncio.to_thread(
        batches_repo.list_batches, runtime.sessions, principal.project_id, before_id=before_id, limit=limit
    )
    paging = BatchPaging(next_cursor=encode_cursor(rows[-1].id) if more and rows else None)
    return json_response(BatchList(data=[Batch.of(r) for r in rows], paging=paging).model_dump())


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_PAGE:
        raise InvalidRequest(
            f"`limit` must be between 1 and {MAX_PAGE}.", param="limit", code="invalid_value"
        )
    return value


@router.get(ROUTE + "/{batch_id}")
async def retrieve_batch(request: Request, batch_id: str) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    row = await asyncio.to_thread(batches_repo.get_batch, runtime.sessions, principal.project_id, batch_id)
    if row is None:
        raise _not_found(batch_id)
    return _body(row)


@router.post(ROUTE + "/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    row = await asyncio.to_thread(
        batches_repo.request_cancel, runtime.sessions, principal.project_id, batch_id, runtime.clock.now()
    )
    if row is None:
        raise _not_found(batch_id)
    if row.status not in ("cancelling", "cancelled"):
        raise InvalidRequest(
            f"The batch `{batch_id}` is {row.status} and can no longer be cancelled.",
            param="batch_id",
            code="invalid_state",
        )
    runtime.wake_batches()
    return _body(row)
