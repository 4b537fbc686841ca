"""Noticing a client that hangs up before its answer is ready, while it waits in a queue or generates.

uvicorn does not cancel an endpoint when its client leaves; it only answers `receive()` with
`http.disconnect`. Once the body has been read, a pending `receive()` returns exactly when the client
goes, so one watcher task per request turns the hang-up into a cancellation of whatever the request
is awaiting: a queued request leaves the scheduler's queue and gives its reservation back at once,
a generating one stops decoding. (A streamed answer needs no watcher: Starlette's StreamingResponse
listens for the disconnect itself.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from tiergate.service.runtime import Runtime

T = TypeVar("T")
log = logging.getLogger("tiergate.hangup")
CLIENT_CLOSED_REQUEST = 499


class ClientGone(Exception):
    """The client hung up; the work it was waiting for has been cancelled and awaited."""


class ClientWatch:
    """Watches one request's connection from after its body is read until `close()`."""

    def __init__(self, request: Request) -> None:
        self._gone = asyncio.ensure_future(_disconnect(request.receive))

    async def run(self, work: Awaitable[T]) -> T:
        """`await work`, unless the client leaves first: then cancel it and raise ClientGone."""
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait((task, self._gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.gather(task, return_exceptions=True)
                    # The client is gone or this request was cancelled: either way, nothing to answer.
                    if self._gone.done():
                        raise ClientGone
        return task.result()

    def close(self) -> None:
        self._gone.cancel()


async def _disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def count_client_gone(runtime: Runtime, request: Request, route: str, request_id: str) -> None:
    """Count and log a request whose client left (499, the status nginx uses for it)."""
    runtime.metrics.cancelled.labels(route).inc()
    request.state.status_override = CLIENT_CLOSED_REQUEST
    log.info("client disconnected; cancelled %s (499)", request_id)


def client_closed(runtime: Runtime, request: Request, route: str, request_id: str) -> Response:
    """The answer to a request whose client left: nobody reads it, but the log and metrics do."""
    count_client_gone(runtime, request, route, request_id)
    return Response(status_code=CLIENT_CLOSED_REQUEST)
