"""The API with a scripted engine: engine failures become clean envelopes and the server keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.scripted_app import first_key
from tests.scripted_engine import ScriptedEngine
from tiergate.app import create_app
from tiergate.config import Settings
from tiergate.tiers.scheduler import Scheduler


@pytest.fixture
def app_and_key(tmp_path: Path) -> tuple[Any, str]:
    settings = Settings(
        data_dir=tmp_path,
        models=[
            {"id": "ok-model", "engine": "scripted", "context_window": 100},
            {"id": "broken-model", "engine": "scripted", "context_window": 100},
        ],
    )
    app = create_app(settings)
    runtime = app.state.runtime
    for model_id, fail_after in (("ok-model", None), ("broken-model", 1)):
        spec = runtime.registry.resolve(model_id)
        runtime.engines[model_id] = ScriptedEngine(spec, ["Hel", "lo", " there"], fail_after=fail_after)
        runtime.schedulers[model_id] = Scheduler(1)
    app.state.ready = True
    return app, first_key(settings)


async def post(app: Any, key: str, body: dict[str, Any]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post(
            "/openai/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}
        )


def body(model: str, **kw: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **kw}


async def test_engine_failure_is_a_clean_500_envelope_and_the_server_keeps_serving(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    failed = await post(app, key, body("broken-model"))
    assert failed.status_code == 500
    error = failed.json()["error"]
    assert error["code"] == "engine_error"
    assert "CUDA" not in failed.text and "Traceback" not in failed.text
    # The slot was freed: the same single-slot engine serves the next request.
    assert app.state.runtime.schedulers["broken-model"].free == 1
    ok = await post(app, key, body("ok-model"))
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "Hello there"


async def test_engine_failure_mid_stream_ends_the_stream_with_an_error_event(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    response = await post(app, key, body("broken-model", stream=True))
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    last = orjson.loads(events[-2][len("data: ") :])
    assert last["error"]["code"] == "engine_error"
    assert "CUDA" not in response.text
    assert app.state.runtime.schedulers["broken-model"].free == 1


async def test_stop_sequence_spanning_pieces_is_cut_from_the_output(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key
    response = await post(app, key, body("ok-model", stop=["lo th"]))
    payload = response.json()
    assert payload["choices"][0]["message"]["content"] == "Hel"
    assert payload["choices"][0]["finish_reason"] == "stop"


async def test_a_bug_in_a_streamed_response_ends_it_with_response_failed_not_a_cut_connection(
    app_and_key: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tiergate.service.response_shape import ResponseShape

    async def buggy(self: ResponseShape) -> Any:
        yield self.event("response.created", response=self.body("in_progress"))
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(ResponseShape, "stream", buggy)
    app, key = app_and_key
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post(
            "/openai/v1/responses",
            json={"model": "ok-model", "input": "hi", "stream": True},
            headers={"authorization": f"Bearer {key}"},
        )
    assert response.status_code == 200
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1].startswith("event: response.failed\n")
    failed = orjson.loads(events[-1].split("\ndata: ", 1)[1])
    assert failed["response"]["error"]["code"] == "engine_error"
    assert "secret" not in response.text
    assert app.state.runtime.schedulers["ok-model"].free == 1
