"""/files: upload (multipart), list, retrieve, delete, content. A project sees only its own files."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import BinaryIO

from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse

from tiergate.api.deps import principal_of, runtime_of
from tiergate.api.framing import json_response
from tiergate.errors import InvalidRequest, NotFound
from tiergate.schemas.files import FileDeleted, FileList, FileObject
from tiergate.service.files import FileLimits, store_upload
from tiergate.service.runtime import Runtime
from tiergate.store import files_repo
from tiergate.store.blobs import CHUNK
from tiergate.store.files_repo import FileInfo

router = APIRouter()
ROUTE = "/files"


def _read_chunks(handle: BinaryIO) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        yield chunk


def _clean_filename(raw: str | None) -> str:
    """The name as given, minus any folder part and characters that would break a header."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable() and c not in '"\\')
    return name[:255] or "upload.jsonl"


def file_not_found(file_id: str) -> NotFound:
    return NotFound(f"No such file: `{file_id}`.", param="file_id", code="file_not_found")


async def own_file(runtime: Runtime, project_id: str, file_id: str) -> FileInfo:
    """The project's file, or 404: another project's id looks exactly like an unknown one."""
    info = await asyncio.to_thread(files_repo.get_file, runtime.sessions, project_id, file_id)
    if info is None:
        raise file_not_found(file_id)
    return info


@router.post(ROUTE)
async def upload_file(request: Request) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidRequest("Upload files as multipart/form-data with fields `file` and `purpose`.")
    # The multipart parser spools file parts to disk past 1 MB, so big uploads never sit in memory.
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest(
                "Missing required parameter `file`.", param="file", code="missing_required_parameter"
            )
        if not isinstance(purpose, str) or not purpose:
            raise InvalidRequest(
                "Missing required parameter `purpose`.", param="purpose", code="missing_required_parameter"
            )
        settings = runtime.settings
        info = await asyncio.to_thread(
            store_upload,
            runtime.blobs,
            _read_chunks(upload.file),
            project_id=principal.project_id,
            filename=_clean_filename(upload.filename),
            purpose=purpose,
            limits=FileLimits(settings.max_file_bytes, settings.max_file_lines),
            now=runtime.clock.now(),
        )
    try:
        await asyncio.to_thread(files_repo.add_file, runtime.sessions, info)
    except BaseException:
        await asyncio.to_thread(runtime.blobs.delete, info.blob_key)
        raise
    return json_response(FileObject.of(info).model_dump())


@router.get(ROUTE)
async def list_files(request: Request) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    purpose = request.query_params.get("purpose")
    infos = await asyncio.to_thread(files_repo.list_files, runtime.sessions, principal.project_id, purpose)
    return json_response(FileList(data=[FileObject.of(i) for i in infos]).model_dump())


@router.get(ROUTE + "/{file_id}")
async def retrieve_file(request: Request, file_id: str) -> Response:
    principal = await principal_of(request)
    info = await own_file(runtime_of(request), principal.project_id, file_id)
    return json_response(FileObject.of(info).model_dump())


@router.delete(ROUTE + "/{file_id}")
async def delete_file(request: Request, file_id: str) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    info = await asyncio.to_thread(files_repo.delete_file, runtime.sessions, principal.project_id, file_id)
    if info is None:
        raise file_not_found(file_id)
    await asyncio.to_thread(runtime.blobs.delete, info.blob_key)
    return json_response(FileDeleted(id=file_id).model_dump())


@router.get(ROUTE + "/{file_id}/content")
async def file_content(request: Request, file_id: str) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    info = await own_file(runtime, principal.project_id, file_id)
    blobs = runtime.blobs
    if not await asyncio.to_thread(blobs.exists, info.blob_key):
        raise file_not_found(file_id)
    # Header values are latin-1; an ASCII stand-in keeps non-ASCII names from breaking it.
    ascii_name = info.filename.encode("ascii", "replace").decode()
    # A sync iterator: Starlette reads it in a worker thread, chunk by chunk.
    return StreamingResponse(
        blobs.chunks(info.blob_key),
        media_type="application/octet-stream",
        headers={
            "content-length": str(info.bytes),
            "content-disposition": f'attachment; filename="{ascii_name}"',
        },
    )
