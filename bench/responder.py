"""The floor for bench/gateway.py: an OpenAI-compatible chat server that answers at once.

A bare ASGI app on uvicorn (httptools, uvloop), no framework: every microsecond it spends is also
spent under each gateway, so the gateways' *added* latency is what remains. It answers
POST /v1/chat/completions with a fixed completion (JSON, or SSE with a few chunks and usage when
the body asks for `"stream": true`), GET /v1/models, and 404 for anything else (so a gateway that
probes /tokenize or /metrics falls back to its own estimate).

    python bench/responder.py --port 9100
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import uvicorn

MODEL = "bench-model"
WORDS = ("Hello", " from", " the", " floor", ".")

_COMPLETION = orjson.dumps(
    {
        "id": "chatcmpl-floor",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(WORDS)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)},
        "system_fingerprint": "fp_floor",
    }
)


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-floor",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + orjson.dumps(body) + b"\n\n"


_STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": word}) for word in WORDS),
        _chunk(
            {},
            "stop",
            {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)},
        ),
        b"data: [DONE]\n\n",
    ]
)
_MODELS = orjson.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})
_NOT_FOUND = orjson.dumps({"error": {"message": "not found", "type": "invalid_request_error"}})

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if method == "POST" and path == "/v1/chat/completions":
        body = await _read_body(receive)
        streaming = b'"stream":true' in body.replace(b" ", b"")
        if streaming:
            await _send(send, 200, _STREAM, b"text/event-stream")
        else:
            await _send(send, 200, _COMPLETION, b"application/json")
        return
    if method == "GET" and path == "/v1/models":
        await _send(send, 200, _MODELS, b"application/json")
        return
    await _read_body(receive)
    await _send(send, 404, _NOT_FOUND, b"application/json")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, http="httptools"
    )


if __name__ == "__main__":
    main()
