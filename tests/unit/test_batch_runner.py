"""The batch runner with a scripted engine and a FakeClock: flow, expiry, crash, preemption, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.scripted_app import first_key
from tests.scripted_engine import ScriptedEngine
from tests.unit.store_backends import BACKENDS, database_url
from tiergate.accounting.ledger import usage_totals
from tiergate.app import create_app
from tiergate.batches.runner import BatchRunner
from tiergate.clock import FakeClock
from tiergate.config import Settings
from tiergate.service.runtime import Runtime
from tiergate.store import batch_lines_repo, batches_repo, tenancy
from tiergate.store.batch_lines_repo import LineTask
from tiergate.tiers.scheduler import Scheduler

MODEL = "scripted-model"
DAY = 86_400


class Env:
    def __init__(self, app: Any, key: str, clock: FakeClock) -> None:
        self.app = app
        self.key = key
        self.clock = clock
        self.runtime: Runtime = app.state.runtime
        self.engine = ScriptedEngine(self.runtime.registry.resolve(MODEL))
        self.runtime.engines[MODEL] = self.engine
        self.runtime.schedulers[MODEL] = Scheduler(1)

    def runner(self, owner: str) -> BatchRunner:
        return BatchRunner(self.runtime, self.runtime.sessions, self.runtime.blobs, owner=owner)

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/openai/v1") as client:
            return await client.request(method, path, headers={"authorization": f"Bearer {self.key}"}, **kw)

    async def submit(self, custom_ids: list[str], extra: list[bytes] = ()) -> str:  # type: ignore[assignment]
        lines = [
            orjson.dumps(
                {
                    "custom_id": cid,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": MODEL, "messages": [{"role": "user", "content": cid}], "max_tokens": 2},
                }
            )
            for cid in custom_ids
        ]
        data = b"\n".join([*lines, *extra]) + b"\n"
        upload = await self.call(
            "POST", "/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"}
        )
        assert upload.status_code == 200, upload.text
        created = await self.call(
            "POST",
            "/batches",
            json={
                "input_file_id": upload.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        assert created.status_code == 200, created.text
        return created.json()["id"]

    async def batch(self, batch_id: str) -> dict[str, Any]:
        return (await self.call("GET", f"/batches/{batch_id}")).json()

    async def content(self, file_id: str | None) -> list[dict[str, Any]]:
        if file_id is None:
            return []
        response = await self.call("GET", f"/files/{file_id}/content")
        return [orjson.loads(line) for line in response.content.splitlines()]


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    with database_url(request.param, tmp_path) as url:
        clock = FakeClock()
        settings = Settings(
            data_dir=tmp_path,
            database_url=url,
            models=[{"id": MODEL, "engine": "scripted", "context_window": 100}],
            batch_lease_seconds=30,
        )
        app = create_app(settings, clock=clock)
        yield Env(app, first_key(settings), clock)
        app.state.runtime.sessions.kw["bind"].dispose()


async def settle(
    runner: BatchRunner, env: Env, batch_id: str, statuses: set[str], passes: int = 20
) -> dict[str, Any]:
    for _ in range(passes):
        await runner.tick()
        await runner.drain()
        body = await env.batch(batch_id)
        if body["status"] in statuses:
            return body
    raise AssertionError(f"batch stuck in {body['status']}")


async def run_some(runner: BatchRunner, env: Env, batch_id: str) -> int:
    """Validate and run one or two lines (concurrency 1), leaving the rest pending; returns how many ran."""
    for _ in range(10):
        await runner.tick()
        await runner.drain()
        done = (await env.batch(batch_id))["request_counts"]["completed"]
        if done:
            assert done < 3
            return done
    raise AssertionError("no line ran")


async def test_every_line_lands_once_and_batch_usage_is_billed_at_half_price(env: Env) -> None:
    bad = orjson.dumps({"custom_id": "bad", "method": "GET", "url": "/v1/chat/completions", "body": {}})
    batch_id = await env.submit(["a", "b", "c"], [bad])
    body = await settle(env.runner("A"), env, batch_id, {"completed"})
    assert body["request_counts"] == {"total": 4, "completed": 3, "failed": 1}
    assert body["errors"]["data"][0]["code"] == "invalid_method"
    assert body["in_progress_at"] and body["finalizing_at"] and body["completed_at"]
    output = await env.content(body["output_file_id"])
    assert sorted(line["custom_id"] for line in output) == ["a", "b", "c"]
    first = output[0]
    assert first["error"] is None and first["response"]["status_code"] == 200
    assert first["response"]["body"]["service_tier"] == "batch"
    assert first["response"]["request_id"] == first["response"]["body"]["x_groq"]["id"]
    assert [line["custom_id"] for line in await env.content(body["error_file_id"])] == ["bad"]
    (total,) = usage_totals(env.runtime.sessions, tenancy.ensure_default(env.runtime.sessions).id)
    assert (total.tier, total.requests, total.completion_tokens) == ("batch", 3, 6)
    assert total.billed_tokens == pytest.approx((total.prompt_tokens + total.completion_tokens) * 0.5)


async def test_a_batch_past_its_window_expires_keeping_finished_lines(env: Env) -> None:
    env.runtime.settings.batch_concurrency = 1
    batch_id = await env.submit(["a", "b", "c"])
    runner = env.runner("A")
    done = await run_some(runner, env, batch_id)
    env.runtime.engines.clear()  # nothing else runs before the deadline
    env.clock.advance(DAY + 1)
    body = await settle(runner, env, batch_id, {"expired"})
    assert body["expired_at"] is not None
    assert body["request_counts"] == {"total": 3, "completed": done, "failed": 3 - done}
    assert [line["custom_id"] for line in await env.content(body["output_file_id"])] == ["a", "b"][:done]
    errors = await env.content(body["error_file_id"])
    assert [e["custom_id"] for e in errors] == ["a", "b", "c"][done:]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}


async def test_lines_of_a_crashed_process_run_again_after_the_lease_and_only_once(env: Env) -> None:
    env.runtime.settings.batch_concurrency = 1
    env.engine.hold = asyncio.Event()
    batch_id = await env.submit(["a", "b"])
    crashed = env.runner("A")
    for _ in range(50):
        await crashed.tick()
        await asyncio.sleep(0.01)
        if crashed.running_lines:
            break
    assert crashed.running_lines == 1
    held: LineTask = next(iter(crashed._lines))  # type: ignore[assignment]
    # kill -9: the tasks die, nothing is released in the store.
    for task in list(crashed._lines.values()):
        task.cancel()
    await asyncio.sleep(0.01)
    env.engine.hold = None
    survivor = env.runner("B")
    await survivor.tick()
    await survivor.drain()
    states = {line: state for line, _, state, _ in batches_repo.iter_results(env.runtime.sessions, batch_id)}
    assert states[held[1]] == "running"  # still leased to the dead process
    env.clock.advance(31)
    body = await settle(survivor, env, batch_id, {"completed"})
    output = await env.content(body["output_file_id"])
    assert sorted(line["custom_id"] for line in output) == ["a", "b"]
    assert body["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    # The dead process's late answer (had it survived) would be refused: it no longer holds the lease.
    late = LineTask(batch_id, held[1], "a", "{}", "", "", "", "", "")
    assert not batch_lines_repo.record_line(
        env.runtime.sessions, "A", late, ok=True, result="{}", usage=None, now=env.clock.now()
    )


async def test_a_second_line_per_slot_waits_ready_in_the_batch_queue_behind_synchronous_work(
    env: Env,
) -> None:
    hold = env.engine.hold = asyncio.Event()
    batch_id = await env.submit(["a", "b", "c"])
    runner = env.runner("A")
    scheduler = env.runtime.schedulers[MODEL]
    for _ in range(50):
        await runner.tick()
        await asyncio.sleep(0.01)
        if runner.running_lines == 2 and scheduler.queued("batch") == 1:
            break
    # One slot: one line holds it, the next is already admitted-waiting, the third is not yet claimed.
    assert runner.running_lines == 2
    assert (scheduler.busy(), scheduler.queued("batch")) == (1, 1)
    # A synchronous request still goes first: it preempts the running line and passes the waiting one.
    sync = asyncio.ensure_future(
        env.call(
            "POST",
            "/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "now"}], "max_tokens": 2},
        )
    )
    for _ in range(50):
        await asyncio.sleep(0.01)
        if runner.preemptions:
            break
    assert runner.preemptions == 1
    hold.set()
    assert (await sync).json()["service_tier"] == "on_demand"
    body = await settle(runner, env, batch_id, {"completed"})
    assert body["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert sorted(line["custom_id"] for line in await env.content(body["output_file_id"])) == ["a", "b", "c"]


async def test_a_preempted_line_runs_again_from_scratch_and_lands_once(env: Env) -> None:
    env.engine.pieces, env.engine.delay = 2, 0.05
    batch_id = await env.submit(["a"])
    runner = env.runner("A")
    for _ in range(50):
        await runner.tick()
        await asyncio.sleep(0.02)
        if env.engine.generations:
            break
    sync = await env.call(
        "POST",
        "/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "now"}], "max_tokens": 2},
    )
    assert sync.status_code == 200 and sync.json()["service_tier"] == "on_demand"
    body = await settle(runner, env, batch_id, {"completed"})
    assert runner.preemptions >= 1
    assert [line["custom_id"] for line in await env.content(body["output_file_id"])] == ["a"]


async def test_cancel_is_cancelling_at_once_then_cancelled_with_done_lines_kept(env: Env) -> None:
    env.runtime.settings.batch_concurrency = 1
    batch_id = await env.submit(["a", "b", "c"])
    runner = env.runner("A")
    done = await run_some(runner, env, batch_id)
    cancelling = (await env.call("POST", f"/batches/{batch_id}/cancel")).json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] is not None
    body = await settle(runner, env, batch_id, {"cancelled"})
    assert body["cancelled_at"] is not None
    assert body["request_counts"] == {"total": 3, "completed": done, "failed": 0}
    assert [line["custom_id"] for line in await env.content(body["output_file_id"])] == ["a", "b"][:done]
    again = await env.call("POST", f"/batches/{batch_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_a_cancel_during_validation_finishes_without_waiting_for_the_lease(env: Env) -> None:
    batch_id = await env.submit(["a", "b"])
    runner = env.runner("A")
    now = env.clock.now()
    claimed = batches_repo.claim_batch(env.runtime.sessions, ("validating",), "A", now, 30)
    assert claimed is not None and claimed.id == batch_id
    cancelling = (await env.call("POST", f"/batches/{batch_id}/cancel")).json()
    assert cancelling["status"] == "cancelling"
    # The validation that was running when the cancel came finds the batch gone from `validating`.
    runner._validate(claimed)
    body = await settle(runner, env, batch_id, {"cancelled"}, passes=3)  # the clock never moves
    assert body["request_counts"]["completed"] == 0


async def test_two_runners_on_one_database_split_the_lines_and_run_each_once(env: Env) -> None:
    env.runtime.schedulers[MODEL] = Scheduler(2)  # room for both runners' lines at once
    env.engine.delay = 0.01
    ids = [f"line-{i}" for i in range(8)]
    batch_id = await env.submit(ids)
    first, second = env.runner("A"), env.runner("B")
    body: dict[str, Any] = {}
    for _ in range(60):
        await asyncio.gather(first.tick(), second.tick())
        await asyncio.gather(first.drain(), second.drain())
        body = await env.batch(batch_id)
        if body["status"] == "completed":
            break
    assert body["status"] == "completed", body
    output = await env.content(body["output_file_id"])
    assert sorted(line["custom_id"] for line in output) == sorted(ids)
    assert body["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
    assert env.engine.generations == len(ids), "a line ran twice"
