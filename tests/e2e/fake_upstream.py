"""A scripted OpenAI-compatible upstream on loopback (stdlib HTTP server in a thread) for gateway tests.

It records what the gateway forwards (to assert tier fields) and misbehaves on request: the upstream
`model` name picks the behaviour, so one server plays every part.

    echo      a normal answer (JSON, or SSE when asked to stream), usage 11 + 3 tokens
    nousage   the same without any usage (the gateway must fall back on its own counts)
    garbage   200 with a body that is not a chat completion
    boom      500
    bad       400 with an OpenAI-style error body
    cut       a stream that stops after one chunk, without [DONE]
    unfinished  a stream that sends [DONE] after one chunk, with no finish_reason (llama-cpp-python's
              server does this when another request interrupts it)
    slow      a stream of 200 chunks, 50 ms apart; `hung_up` counts the times the reader left early
    notjson, wrongjson, badargs, othertool, badfunction
              a well-formed answer that breaks a promise (text that is not JSON, JSON off the schema,
              tool-call arguments that are not JSON, a tool not offered), or a malformed one (a
              tool call whose `function` is a string); streamed when asked, like `echo`

`/tokenize` answers a vLLM-style count of 1234; `/metrics` publishes `vllm:num_requests_waiting`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKENIZE_COUNT = 1234


def _call(function: Any) -> dict[str, Any]:
    return {"id": "call_up", "type": "function", "function": function}


# The assistant message each scripted model answers with (the rest answer "hello there").
MESSAGES: dict[str, dict[str, Any]] = {
    "notjson": {"role": "assistant", "content": "Sure! {oops"},
    "wrongjson": {"role": "assistant", "content": '{"name": 5}'},
    "badargs": {
        "role": "assistant",
        "content": None,
        "tool_calls": [_call({"name": "get_weather", "arguments": '{"city": '})],
    },
    "othertool": {
        "role": "assistant",
        "content": None,
        "tool_calls": [_call({"name": "launch_rocket", "arguments": "{}"})],
    },
    "badfunction": {"role": "assistant", "content": None, "tool_calls": [_call("get_weather")]},
}
ECHO = {"role": "assistant", "content": "hello there"}


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.tokenize_calls = 0
        self.waiting = 0
        self.hung_up = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("model") == model]


def _finish(message: dict[str, Any]) -> str:
    return "tool_calls" if message.get("tool_calls") else "stop"


def _completion(model: str, usage: bool) -> dict[str, Any]:
    message = MESSAGES.get(model, ECHO)
    body: dict[str, Any] = {
        "id": "upstream-id",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "system_fingerprint": "fp_upstream_secret",
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(message)}],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    return body


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "upstream-id",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _handler(fake: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                text = f'vllm:num_requests_waiting{{model_name="m"}} {fake.waiting}.0\n'
                self._send(200, text.encode(), "text/plain")
            elif self.path == "/v1/models":
                self._send(200, b'{"object": "list", "data": []}')
            else:
                self._send(404, b'{"error": {"message": "no such path"}}')

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", 0)))
            body = json.loads(raw)
            if self.path == "/tokenize":
                fake.tokenize_calls += 1
                self._send(200, json.dumps({"count": TOKENIZE_COUNT, "max_model_len": 4096}).encode())
                return
            body["_authorization"] = self.headers.get("authorization")
            fake.requests.append(body)
            model = body.get("model")
            if model == "boom":
                self._send(500, b'{"error": {"message": "internal"}}')
            elif model == "bad":
                error = {"message": "bad thing", "type": "invalid_request_error", "code": "bad_thing"}
                self._send(400, json.dumps({"error": error}).encode())
            elif model == "garbage":
                self._send(200, b"<html>surprise</html>", "text/html")
            elif body.get("stream"):
                self._stream(model)
            else:
                self._send(200, json.dumps(_completion(model, usage=model != "nousage")).encode())

        def _stream(self, model: str) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            if model == "slow":
                self._slow()
                return
            message = MESSAGES.get(model, ECHO)
            head, space, tail = (message["content"] or "").partition(" ")
            events = [_chunk({"role": "assistant", "content": ""}), _chunk({"content": head})]
            if model not in ("cut", "unfinished"):
                if tail:
                    events.append(_chunk({"content": space + tail}))
                calls = message.get("tool_calls") or []
                if calls:
                    events.append(_chunk({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]}))
                events.append(_chunk({}, _finish(message)))
            for event in events:
                self.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
                self.wfile.flush()
            if model != "cut":
                self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def _slow(self) -> None:
            self.close_connection = True
            try:
                for n in range(200):
                    self.wfile.write(b"data: " + json.dumps(_chunk({"content": f"{n} "})).encode() + b"\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                fake.hung_up += 1

    return Handler
