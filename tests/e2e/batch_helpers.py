"""Helpers the batch and file e2e tests share: SDK clients, JSONL builders, polling."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import groq

from tests.conftest import LiveServer

MODEL = "qwen2.5-coder-0.5b-instruct"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def client(server: LiveServer, api_key: str | None = None) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=api_key or server.api_key, max_retries=0, timeout=30)


def chat_line(custom_id: str, **overrides: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 1},
    }
    line.update(overrides)
    return line


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def upload(api: groq.Groq, lines: list[dict[str, Any]]) -> str:
    return api.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch").id


def submit(api: groq.Groq, lines: list[dict[str, Any]], window: str = "24h") -> str:
    file_id = upload(api, lines)
    return api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window=window
    ).id


def wait_for(api: groq.Groq, batch_id: str, statuses: set[str] = TERMINAL, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = api.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout}s")


def lines_of(api: groq.Groq, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in api.files.content(file_id).read().splitlines() if line.strip()]


def new_project(server: LiveServer) -> tuple[str, str]:
    """(name, API key) of a fresh project."""
    name = f"p-{secrets.token_hex(4)}"
    server.cli("projects", "create", name)
    return name, server.new_key(name)


def new_project_key(server: LiveServer) -> str:
    return new_project(server)[1]
