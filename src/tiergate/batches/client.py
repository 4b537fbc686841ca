"""`tiergate batch submit` over HTTP: upload, create, follow, download. Works against any server URL.

Plain httpx (no SDK dependency at runtime); errors come back as the server's own message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

TERMINAL = ("completed", "failed", "expired", "cancelled")
CHAT_ENDPOINT = "/v1/chat/completions"


class BatchClientError(Exception):
    """The server refused a call; the message is the server's `error.message`."""


class BatchClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        root = base_url.rstrip("/")
        if not root.endswith("/v1"):
            root += "/openai/v1"
        self.http = httpx.Client(
            base_url=root, headers={"authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise BatchClientError(f"{response.status_code}: {message}")
        return response

    def upload(self, path: Path) -> dict[str, Any]:
        with path.open("rb") as handle:
            response = self.http.post(
                "/files", files={"file": (path.name, handle)}, data={"purpose": "batch"}
            )
        return self._check(response).json()

    def create(self, file_id: str, window: str, endpoint: str = CHAT_ENDPOINT) -> dict[str, Any]:
        body = {"input_file_id": file_id, "endpoint": endpoint, "completion_window": window}
        return self._check(self.http.post("/batches", json=body)).json()

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return self._check(self.http.get(f"/batches/{batch_id}")).json()

    def wait(
        self, batch_id: str, on_update: Callable[[dict[str, Any]], None], interval: float = 1.0
    ) -> dict[str, Any]:
        while True:
            batch = self.retrieve(batch_id)
            on_update(batch)
            if batch["status"] in TERMINAL:
                return batch
            time.sleep(interval)

    def download(self, file_id: str, target: Path) -> Path:
        with self.http.stream("GET", f"/files/{file_id}/content") as response:
            if response.status_code >= 400:
                response.read()  # the error body, for _check's message
            self._check(response)
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return target


def endpoint_of(path: Path) -> str:
    """The batch's endpoint: the `url` of the file's first line (a batch serves one endpoint)."""
    with path.open("rb") as handle:
        first = handle.readline()
    try:
        url = json.loads(first).get("url")
    except (ValueError, AttributeError):
        return CHAT_ENDPOINT  # the server's validation reports what is wrong with the line
    return url if isinstance(url, str) and url else CHAT_ENDPOINT


def result_paths(input_path: Path) -> tuple[Path, Path]:
    """Where results land: next to the input, `<stem>.output.jsonl` and `<stem>.errors.jsonl`."""
    stem = input_path.with_suffix("")
    return stem.with_name(stem.name + ".output.jsonl"), stem.with_name(stem.name + ".errors.jsonl")
