"""POST /responses: parse, translate onto the chat road, frame a Response object or its SSE events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from tiergate.api.deps import json_body, parse_with_limits, principal_of, runtime_of
from tiergate.api.framing import json_response, sse_event
from tiergate.api.hangup import ClientGone, ClientWatch, client_closed
from tiergate.errors import client_facing
from tiergate.schemas.responses import ResponseCreateRequest
from tiergate.service.chat import AnyChatRun, complete
from tiergate.service.response_shape import ResponseShape
from tiergate.service.responses import start_response

router = APIRouter()
ROUTE = "/responses"


@router.post(ROUTE)
async def create_response(request: Request) -> Response:
    principal = await principal_of(request)
    runtime = runtime_of(request)
    body = await parse_with_limits(ResponseCreateRequest, await json_body(request), runtime, principal)
    watch = ClientWatch(request)
    run: AnyChatRun | None = None
    try:
        run = await watch.run(start_response(runtime, principal, body))
        request.state.response_headers = run.headers
        shape = ResponseShape(body, run)
        if body.stream:
            return StreamingResponse(
                _sse(shape),
                media_type="text/event-stream",
                headers={**run.headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            await watch.run(complete(run))  # the chat body it returns is not needed: shape reads run
        finally:
            with anyio.CancelScope(shield=True):
                await run.finish()
        return json_response(shape.body("completed", shape.output()), headers=run.headers)
    except ClientGone:
        return client_closed(runtime, request, ROUTE, run.request_id if run else "a queued request")
    finally:
        watch.close()


async def _sse(shape: ResponseShape) -> AsyncIterator[bytes]:
    """Each event framed as `event: <type>` + `data: <json>`, the way OpenAI streams Responses."""
    try:
        async for event in shape.stream():
            yield f"event: {event['type']}\n".encode() + sse_event(event)
    except Exception as exc:
        # As for chat streams: a bug ends the stream with a failed event too, not a cut connection.
        message = "The server had an error while generating the answer. Please retry."
        error = client_facing(exc, message, f"response {shape.run.request_id}").body()["error"]
        failed = shape.event("response.failed", response={**shape.body("failed"), "error": error})
        yield b"event: response.failed\n" + sse_event(failed)
    finally:
        with anyio.CancelScope(shield=True):
            await shape.run.finish()
