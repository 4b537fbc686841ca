"""POST /chat/completions: parse, hand to the service road, frame the answer as JSON or SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from tiergate.api.deps import json_body, parse_with_limits, principal_of, runtime_of
from tiergate.api.framing import SSE_DONE, json_response, sse_event
from tiergate.api.hangup import ClientGone, ClientWatch, client_closed, count_client_gone
from tiergate.errors import client_facing
from tiergate.generation.output import OutputDelta
from tiergate.schemas.chat import ChatCompletionRequest
from tiergate.service.chat import AnyChatRun, complete, start_chat

router = APIRouter()
ROUTE = "/chat/completions"


async def create_chat_completion(request: Request) -> Response:
    # What FastAPI does for its own routes: the route in the scope is the un-prefixed template, which
    # the metrics middleware uses as the label (/chat/completions under both API prefixes).
    request.scope["route"] = _ROUTE
    principal = await principal_of(request)
    runtime = runtime_of(request)
    body = await json_body(request)
    chat = await parse_with_limits(ChatCompletionRequest, body, runtime, principal)
    watch = ClientWatch(request)
    run: AnyChatRun | None = None
    try:
        run = await watch.run(start_chat(runtime, principal, chat))
        request.state.response_headers = run.headers
        if chat.stream:
            include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
            return StreamingResponse(
                _sse(run, include_usage, request),
                media_type="text/event-stream",
                headers={**run.headers, "cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            body = await watch.run(complete(run))
        finally:
            with anyio.CancelScope(shield=True):
                await run.finish()
        return json_response(body, headers=run.headers)
    except ClientGone:
        # Left while queued (its place and reservation are already given back) or while generating.
        return client_closed(runtime, request, ROUTE, run.request_id if run else "a queued request")
    finally:
        watch.close()


# A plain Starlette route, not FastAPI's: the endpoint reads the body itself, and FastAPI's dependency
# solving cost ~10% of the gateway's CPU per request for nothing.
router.add_route(ROUTE, create_chat_completion, methods=["POST"])
_ROUTE = router.routes[-1]
_STREAM_FAILED = "The server had an error while generating the answer. Please retry."


def _chunk(run: AnyChatRun, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": run.completion_id,
        "object": "chat.completion.chunk",
        "created": run.created,
        "model": run.model,
        "system_fingerprint": run.fingerprint,
        "choices": choices,
        **extra,
    }


def _delta(delta: dict[str, Any], finish_reason: str | None = None) -> list[dict[str, Any]]:
    return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]


def _piece_delta(run: AnyChatRun, piece: OutputDelta) -> dict[str, Any]:
    """One output piece as a chunk delta; a tool call goes out whole, with its index for assembly."""
    delta: dict[str, Any] = {}
    if piece.reasoning:
        delta["reasoning"] = piece.reasoning
    if piece.content:
        delta["content"] = piece.content
    if piece.tool_calls and run.plan.legacy_functions:
        first = piece.tool_calls[0]
        delta["function_call"] = {"name": first.name, "arguments": first.arguments}
    elif piece.tool_calls:
        delta["tool_calls"] = [{"index": call.index, **call.as_dict()} for call in piece.tool_calls]
    return delta


async def _sse(run: AnyChatRun, include_usage: bool, request: Request) -> AsyncIterator[bytes]:
    """Chunks as GroqCloud sends them: role first, content deltas, finish, usage in x_groq, [DONE]."""
    usage_field = {"usage": None} if include_usage else {}
    completed = False
    events = run.events()
    try:
        yield sse_event(
            _chunk(
                run,
                _delta({"role": "assistant", "content": ""}),
                x_groq={"id": run.request_id},
                service_tier=run.tier,
                **usage_field,
            )
        )
        try:
            async for piece in events:
                yield sse_event(_chunk(run, _delta(_piece_delta(run, piece)), **usage_field))
        except Exception as exc:
            # Headers are gone; the stream ends with the error where the SDKs look for it.
            error = client_facing(exc, _STREAM_FAILED, f"stream {run.request_id}")
            yield sse_event({"error": error.body()["error"]}) + SSE_DONE
            completed = True
            return
        usage = run.usage.as_dict()
        # The closing events are ready together: one write, not three (each write is a syscall).
        tail = [
            sse_event(
                _chunk(
                    run,
                    _delta({}, run.finish_reason),
                    x_groq={"id": run.request_id, "usage": usage},
                    **usage_field,
                )
            )
        ]
        if include_usage:
            tail.append(sse_event(_chunk(run, [], usage=usage)))
        tail.append(SSE_DONE)
        yield b"".join(tail)
        completed = True
    finally:
        with anyio.CancelScope(shield=True):
            # Closing the generator stops the engine's decode at once and frees the slot.
            await events.aclose()
            await run.finish()
        if not completed:
            count_client_gone(runtime_of(request), request, ROUTE, run.request_id)
