"""Batch API end to end with the official groq SDK and the real model (max_tokens 1: fast)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections import Counter

import groq
import pytest
from groq.types import BatchCreateResponse, BatchListResponse, BatchRetrieveResponse

from tests.conftest import TIERGATE, LiveServer
from tests.e2e.batch_helpers import (
    MODEL,
    chat_line,
    client,
    jsonl,
    lines_of,
    new_project,
    new_project_key,
    submit,
    upload,
    wait_for,
)


def test_a_batch_runs_to_completion_with_per_line_failures_in_the_error_file(server: LiveServer) -> None:
    api = client(server)
    lines = [
        chat_line("ok-1"),
        chat_line("ok-2"),
        chat_line("bad-method", method="GET"),
        chat_line(
            "bad-model", body={"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
        ),
    ]
    file_id = upload(api, lines)
    created = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "t"}
    )
    BatchCreateResponse.model_validate(created.model_dump())
    assert created.status == "validating" and created.id.startswith("batch_")
    assert created.expires_at == created.created_at + 86_400
    assert created.request_counts is not None and created.request_counts.total == 0
    done = wait_for(api, created.id)
    BatchRetrieveResponse.model_validate(done.model_dump())
    assert done.status == "completed"
    assert done.metadata == {"job": "t"}
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 2, 2)
    assert done.errors is not None and done.errors.object == "list"
    assert {(e.code, e.line, e.param) for e in done.errors.data or []} == {
        ("invalid_method", 3, "method"),
        ("model_not_found", 4, "body.model"),
    }
    output = lines_of(api, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == ["ok-1", "ok-2"]
    for line in output:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req_")
        assert response["body"]["object"] == "chat.completion" and response["body"]["model"] == MODEL
    errors = lines_of(api, done.error_file_id)
    assert sorted(line["custom_id"] for line in errors) == ["bad-method", "bad-model"]
    assert api.files.info(done.output_file_id).purpose == "batch_output"


def test_duplicate_custom_ids_fail_the_whole_batch(server: LiveServer) -> None:
    api = client(server)
    done = wait_for(api, submit(api, [chat_line("same"), chat_line("other"), chat_line("same")]))
    assert done.status == "failed" and done.failed_at is not None
    assert done.errors is not None
    assert [(e.code, e.line) for e in done.errors.data or []] == [("duplicate_custom_id", 3)]
    assert done.output_file_id is None


@pytest.mark.parametrize("window", ["24h", "72h", "7d"])
def test_windows_from_24h_to_7d_are_accepted(server: LiveServer, window: str) -> None:
    api = client(server)
    batch = api.batches.create(
        input_file_id=upload(api, [chat_line("a", method="GET")]),
        endpoint="/v1/chat/completions",
        completion_window=window,
    )
    assert batch.completion_window == window
    assert batch.expires_at is not None and batch.expires_at - batch.created_at >= 86_400


@pytest.mark.parametrize("window", ["1h", "23h", "8d", "forever"])
def test_windows_outside_24h_to_7d_are_refused(server: LiveServer, window: str) -> None:
    api = client(server)
    with pytest.raises(groq.BadRequestError) as caught:
        api.batches.create(
            input_file_id=upload(api, [chat_line("a")]),
            endpoint="/v1/chat/completions",
            completion_window=window,
        )
    assert caught.value.response.json()["error"]["param"] == "completion_window"


def test_unknown_files_and_endpoints_are_refused(server: LiveServer) -> None:
    api = client(server)
    with pytest.raises(groq.NotFoundError):
        api.batches.create(
            input_file_id="file_nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(groq.BadRequestError):
        api.batches.create(
            input_file_id=upload(api, [chat_line("a")]),
            endpoint="/v1/embeddings",  # type: ignore[arg-type]
            completion_window="24h",
        )


def test_cancel_turns_cancelling_at_once_and_cancelled_within_seconds(server: LiveServer) -> None:
    api = client(server)
    batch_id = submit(api, [chat_line(f"c{i}") for i in range(30)])
    cancelled = api.batches.cancel(batch_id)
    assert cancelled.status in ("cancelling", "cancelled") and cancelled.cancelling_at is not None
    started = time.monotonic()
    done = wait_for(api, batch_id, timeout=15)
    assert done.status == "cancelled" and time.monotonic() - started < 10
    assert done.request_counts is not None
    output = lines_of(api, done.output_file_id)
    assert done.request_counts.completed == len(output) < 30
    assert len({line["custom_id"] for line in output}) == len(output)


def test_list_pages_with_a_cursor_and_returns_just_the_ids_asked_for(server: LiveServer) -> None:
    key = new_project_key(server)
    api = client(server, key)
    ids = [submit(api, [chat_line("x"), chat_line("x")]) for _ in range(3)]
    first = api.batches.list(extra_query={"limit": 2})
    BatchListResponse.model_validate(first.model_dump())
    assert [b.id for b in first.data] == ids[::-1][:2]
    cursor = first.model_extra["paging"]["next_cursor"]  # type: ignore[index]
    assert cursor.startswith("cursor_")
    second = api.batches.list(extra_query={"limit": 2, "cursor": cursor})
    assert [b.id for b in second.data] == [ids[0]]
    assert second.model_extra["paging"]["next_cursor"] is None  # type: ignore[index]
    picked = api.batches.list(extra_query={"id": [ids[0], ids[2]]})
    assert sorted(b.id for b in picked.data) == sorted([ids[0], ids[2]])


def test_a_project_never_sees_another_projects_batches(server: LiveServer) -> None:
    mine = client(server)
    batch_id = submit(mine, [chat_line("a", method="GET")])
    other = client(server, new_project_key(server))
    with pytest.raises(groq.NotFoundError):
        other.batches.retrieve(batch_id)
    with pytest.raises(groq.NotFoundError):
        other.batches.cancel(batch_id)
    assert batch_id not in [b.id for b in other.batches.list().data]
    assert other.batches.list(extra_query={"id": [batch_id]}).data == []


def test_batch_lines_do_not_count_against_synchronous_rate_limits(server: LiveServer) -> None:
    name, key = new_project(server)
    api = client(server, key)
    server.cli("limits", "set", "--project", name, "--model", MODEL, "--rpm", "2")
    done = wait_for(api, submit(api, [chat_line(f"l{i}") for i in range(4)]))
    assert done.request_counts is not None and done.request_counts.completed == 4
    for _ in range(2):
        api.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    with pytest.raises(groq.RateLimitError):
        api.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1)


def test_kill_9_mid_batch_then_restart_completes_every_line_exactly_once(server_factory) -> None:  # type: ignore[no-untyped-def]
    env = {"TIERGATE_BATCH_LEASE_SECONDS": "3", "TIERGATE_BATCH_POLL_SECONDS": "0.2"}
    first = server_factory("--parallel", "1", env=env)
    api = client(first)
    custom_ids = [f"k{i:02d}" for i in range(20)]
    batch_id = submit(api, [chat_line(cid) for cid in custom_ids])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        counts = api.batches.retrieve(batch_id).request_counts
        if counts is not None and counts.completed >= 3:
            break
        time.sleep(0.1)
    first.process.kill()
    first.process.wait()
    second = server_factory("--parallel", "1", data_dir=first.data_dir, env=env)
    api = client(second)
    done = wait_for(api, batch_id, timeout=180)
    assert done.status == "completed"
    seen = Counter(line["custom_id"] for line in lines_of(api, done.output_file_id))
    seen.update(line["custom_id"] for line in lines_of(api, done.error_file_id))
    assert seen == Counter(custom_ids)
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (
        20,
        20,
        0,
    )


def test_cli_batch_submit_waits_and_downloads_results_next_to_the_input(server: LiveServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "jobs.jsonl"
    source.write_bytes(jsonl([chat_line("cli-1"), chat_line("cli-2"), chat_line("cli-bad", method="GET")]))
    result = subprocess.run(
        [*TIERGATE, "batch", "submit", str(source), "--window", "24h", "--wait", "--base-url", server.root],
        capture_output=True,
        text=True,
        env={**os.environ, "TIERGATE_API_KEY": server.api_key},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "completed: 2 completed, 1 failed of 3" in result.stdout
    output = [json.loads(line) for line in (tmp_path / "jobs.output.jsonl").read_text().splitlines()]
    assert sorted(line["custom_id"] for line in output) == ["cli-1", "cli-2"]
    errors = (tmp_path / "jobs.errors.jsonl").read_text()
    assert "cli-bad" in errors


def test_cli_batch_submit_reports_an_unreachable_server_in_one_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "jobs.jsonl"
    source.write_bytes(jsonl([chat_line("x")]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = subprocess.run(
        [*TIERGATE, "batch", "submit", str(source), "--base-url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        env={**os.environ, "TIERGATE_API_KEY": "gsk_x"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "could not reach the server" in result.stderr
    assert "Traceback" not in result.stderr
