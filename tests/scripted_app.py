"""The real app (routers, service road, admission) over scripted engines, for HTTP-level unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.scripted_engine import ScriptedEngine
from tiergate.app import create_app
from tiergate.config import Settings
from tiergate.engines.base import PreparedPrompt, SamplingParams, TokenDelta
from tiergate.store import open_store, tenancy
from tiergate.tiers.scheduler import Scheduler

# What the model emits for two parallel calls, split as Qwen's tokens come: a newline between them.
TWO_WEATHER_CALLS = [
    "<tool_call>",
    '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n',
    "</tool_call>",
    "\n",
    "<tool_call>",
    '\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n',
    "</tool_call>",
]


class RecordingEngine(ScriptedEngine):
    """A ScriptedEngine that keeps what it was asked for; `prompt_ends` is appended to every prompt,
    like a chat template that opens the think block itself (`"<think>\\n"`)."""

    def __init__(self, *args: Any, prompt_ends: str = "", **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.prompt_ends = prompt_ends
        self.params: SamplingParams | None = None
        self.prompt: PreparedPrompt | None = None

    def prepare(
        self, messages: list[dict[str, Any]], tools: Any = None, continue_final_message: bool = False
    ) -> PreparedPrompt:
        prompt = super().prepare(messages, tools, continue_final_message)
        return PreparedPrompt(prompt.text + self.prompt_ends, prompt.tokens)

    async def generate(
        self, prompt: PreparedPrompt, params: SamplingParams, slot: int
    ) -> AsyncIterator[TokenDelta]:
        self.prompt, self.params = prompt, params
        async for delta in super().generate(prompt, params, slot):
            yield delta


def scripted_app(tmp_path: Path, models: dict[str, dict[str, Any]]) -> tuple[Any, str]:
    """An app whose models (id -> extra spec fields) each run a RecordingEngine; and an API key."""
    settings = Settings(
        data_dir=tmp_path,
        models=[
            {"id": model_id, "engine": "scripted", "context_window": 400, **extra}
            for model_id, extra in models.items()
        ],
    )
    app = create_app(settings)
    runtime = app.state.runtime
    for model_id in models:
        runtime.engines[model_id] = RecordingEngine(runtime.registry.resolve(model_id), ["ok"])
        runtime.schedulers[model_id] = Scheduler(1)
    app.state.ready = True
    return app, first_key(settings)


def first_key(settings: Settings) -> str:
    """A new API key for the default project of the store `settings` name."""
    store = open_store(settings.resolved_database_url)
    try:
        return tenancy.create_key(store.sessions, "default")[1]
    finally:
        store.close()


async def post(app: Any, key: str, path: str, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(f"/openai/v1{path}", json=body, headers={"authorization": f"Bearer {key}"})


def sse_data(response: httpx.Response) -> list[Any]:
    """The JSON payloads of an SSE body, without the closing [DONE]."""
    out = []
    for event in response.text.split("\n\n"):
        for line in event.splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(orjson.loads(line[len("data: ") :]))
    return out
