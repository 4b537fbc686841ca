"""The batch runner: validates new batches, runs their lines on idle slots, finalizes them.

Crash safety comes from the store, not from this process: a line is leased (owner + expiry) before
it runs and its result is written only while the lease is still ours, in the same transaction as
the batch counter and the usage row. A process killed mid-line loses nothing: the lease runs out
and any process sharing the database (or this one, restarted) runs the line again from scratch.

Each line runs in its own task through the synchronous request road with internal_tier="batch".
When a synchronous request wants the slot, the scheduler cancels that task and sets
`lease.preempted`; a cancellation we did not ask for is that preemption, and the line simply runs
again (partial output is thrown away). `tick()` is one pass of all the work, so unit tests drive
the runner with a FakeClock without sleeping; `run()` repeats it, woken early by `wake()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
from collections.abc import Awaitable
from dataclasses import dataclass

import anyio
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from tiergate import ids
from tiergate.accounting.ledger import UsageEntry
from tiergate.auth import Principal
from tiergate.batches import formats
from tiergate.batches.finalize import finalize_batch
from tiergate.batches.validate import AUDIO_URLS, validate_lines
from tiergate.errors import APIError, RateLimited, client_facing
from tiergate.schemas.audio import TranscriptionRequest
from tiergate.schemas.chat import ChatCompletionRequest
from tiergate.service.audio import transcribe
from tiergate.service.chat import complete, start_chat
from tiergate.service.runtime import Runtime
from tiergate.store import batch_lines_repo, batches_repo, files_repo
from tiergate.store.batch_lines_repo import LineTask
from tiergate.store.blobs import BlobStore
from tiergate.store.models import BatchJob

log = logging.getLogger("tiergate.batches")

# Lines in flight per slot (see BatchRunner.capacity).
_LOOK_AHEAD = 2


@dataclass(frozen=True, slots=True)
class _Outcome:
    ok: bool
    result: str
    usage: UsageEntry | None = None
    retry_after: float | None = None


class BatchRunner:
    def __init__(
        self,
        runtime: Runtime,
        sessions: sessionmaker[Session],
        blobs: BlobStore,
        *,
        owner: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.sessions = sessions
        self.blobs = blobs
        self.clock = runtime.clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease = runtime.settings.batch_lease_seconds
        self._lines: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._background: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._last_renewal = float("-inf")
        self.preemptions = 0

    # -- driving ------------------------------------------------------------------------------------
    def wake(self) -> None:
        """New work (a batch created or cancelled here, a line finished): look now, not at the next poll."""
        self._wake.set()

    @property
    def capacity(self) -> int:
        """Lines this process keeps in flight: by default two per slot, one running and one already
        parsed, templated and waiting in the scheduler's batch queue. A freed slot then goes to the
        waiting line at once, instead of after the result's commit, a store pass and the next line's
        templating (bench/batch.py: a batch alone kept its slots 89% busy with one line per slot, 99% so).
        Waiting lines cost synchronous traffic nothing: batch is the last tier in the queue."""
        configured = self.runtime.settings.batch_concurrency
        if configured > 0:
            return configured
        return max(1, _LOOK_AHEAD * sum(engine.slots for engine in self.runtime.engines.values()))

    @property
    def running_lines(self) -> int:
        return len(self._lines)

    async def run(self) -> None:
        poll = self.runtime.settings.batch_poll_seconds
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("batch runner pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)

    async def tick(self) -> None:
        """One pass: expire, cancel, renew leases, validate, finalize, start lines."""
        now = self.clock.now()
        stopped = await asyncio.to_thread(batches_repo.expire_due, self.sessions, now)
        stopped += await asyncio.to_thread(batches_repo.apply_cancels, self.sessions)
        await self._stop_local_lines(stopped)
        if now - self._last_renewal >= self.lease / 3:
            self._last_renewal = now
            await asyncio.to_thread(batch_lines_repo.renew_leases, self.sessions, self.owner, now, self.lease)
        self._start_background("validate", self._validate_next)
        await asyncio.to_thread(batches_repo.mark_finishable, self.sessions, now)
        self._start_background("finalize", self._finalize_next)
        await self._dispatch(now)

    async def drain(self) -> None:
        """Wait for every line and background job this process started (unit tests)."""
        while self._lines or self._background:
            await asyncio.gather(*self._lines.values(), *self._background.values(), return_exceptions=True)

    async def stop(self) -> None:
        """Cancel local work and give unfinished lines back, so a restart picks them up at once."""
        tasks = [*self._lines.values(), *self._background.values()]
        keys = list(self._lines)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with anyio.CancelScope(shield=True):
            await asyncio.to_thread(batch_lines_repo.release_lines, self.sessions, self.owner, keys)

    def _start_background(self, name: str, job: object) -> None:
        task = self._background.get(name)
        if task is not None and not task.done():
            return
        coro: Awaitable[None] = job()  # type: ignore[operator]
        self._background[name] = asyncio.ensure_future(coro)
        self._background[name].add_done_callback(lambda t, n=name: self._background_done(n, t))

    def _background_done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._background.get(name) is task:
            del self._background[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("batch %s job failed", name, exc_info=task.exception())

    # -- batch-level work ---------------------------------------------------------------------------
    async def _validate_next(self) -> None:
        now = self.clock.now()
        batch = await asyncio.to_thread(
            batches_repo.claim_batch, self.sessions, ("validating",), self.owner, now, self.lease
        )
        if batch is None:
            return
        try:
            await asyncio.to_thread(self._validate, batch)
        except Exception:
            # Never leave a batch leased (and renewed) forever because of a bug: fail it, say so.
            log.exception("validating batch %s failed", batch.id)
            error = {
                "code": "internal_error",
                "message": "The input file could not be validated.",
                "line": None,
            }
            await asyncio.to_thread(
                batches_repo.fail_batch, self.sessions, batch.id, self.owner, [error], self.clock.now()
            )
        self.wake()

    def _validate(self, batch: BatchJob) -> None:
        info = files_repo.get_file(self.sessions, batch.project_id, batch.input_file_id)
        now = self.clock.now()
        if info is None or not self.blobs.exists(info.blob_key):
            error = {
                "code": "file_not_found",
                "message": f"The input file `{batch.input_file_id}` no longer exists.",
                "param": "input_file_id",
                "line": None,
            }
            batches_repo.fail_batch(self.sessions, batch.id, self.owner, [error], now)
            return
        registry = self.runtime.registry
        with self.blobs.open(info.blob_key) as handle:
            result = validate_lines(handle, batch.endpoint, lambda name: name in registry)
        lines = [(v.line, v.custom_id, v.request, v.failed_result) for v in result.lines]
        batches_repo.store_validation(
            self.sessions,
            batch.id,
            self.owner,
            lines,
            [e.as_dict() for e in result.errors],
            fatal=result.fatal,
            now=self.clock.now(),
        )

    async def _finalize_next(self) -> None:
        now = self.clock.now()
        batch = await asyncio.to_thread(
            batches_repo.claim_batch, self.sessions, ("finalizing", "cancelling"), self.owner, now, self.lease
        )
        if batch is None:
            return
        try:
            await asyncio.to_thread(finalize_batch, self.sessions, self.blobs, batch, self.owner, now)
        except Exception:
            log.exception("finalizing batch %s failed; it will be retried", batch.id)
            await asyncio.to_thread(batches_repo.release_batch, self.sessions, batch.id, self.owner)
        self.wake()

    # -- lines --------------------------------------------------------------------------------------
    async def _dispatch(self, now: float) -> None:
        if not self.runtime.engines and not self.runtime.audio_engines:
            return
        free = self.capacity - len(self._lines)
        tasks = await asyncio.to_thread(
            batch_lines_repo.claim_lines, self.sessions, self.owner, now, self.lease, free
        )
        for task in tasks:
            key = task.key
            self._lines[key] = asyncio.ensure_future(self._drive(task))
            self._lines[key].add_done_callback(lambda _t, k=key: self._line_done(k))

    def _line_done(self, key: tuple[str, int]) -> None:
        self._lines.pop(key, None)
        self.wake()

    async def _stop_local_lines(self, stopped: list[str]) -> None:
        """Cancel local lines of batches that are no longer in progress (here or in another process)."""
        local = {batch_id for batch_id, _ in self._lines}
        if not local:
            return
        active = set(await asyncio.to_thread(batches_repo.in_progress_ids, self.sessions, sorted(local)))
        for key, task in list(self._lines.items()):
            if key[0] in stopped or key[0] not in active:
                task.cancel()

    async def _drive(self, task: LineTask) -> None:
        principal = Principal(
            task.org_id, task.org_name, task.project_id, task.project_name, task.key_id, False
        )
        request: ChatCompletionRequest | TranscriptionRequest
        try:
            if task.endpoint in AUDIO_URLS:
                request = TranscriptionRequest.model_validate_json(task.request)
            else:
                request = ChatCompletionRequest.model_validate_json(task.request)
        except (ValidationError, APIError):
            # Validation already checked the body; this only guards against a schema change since.
            result = formats.error_line(task.custom_id, "invalid_request", "The request body is invalid.")
            await self._record(task, _Outcome(False, result))
            return
        while True:
            attempt = asyncio.ensure_future(self._attempt(task, principal, request))
            try:
                await asyncio.wait({attempt})
            except asyncio.CancelledError:
                attempt.cancel()
                await asyncio.gather(attempt, return_exceptions=True)
                raise
            if attempt.cancelled():
                # Not our doing: the scheduler preempted this line for a synchronous request.
                self.preemptions += 1
                continue
            outcome = attempt.result()
            if outcome.retry_after is not None:
                await asyncio.sleep(outcome.retry_after)
                continue
            await self._record(task, outcome)
            return

    async def _record(self, task: LineTask, outcome: _Outcome) -> None:
        record = functools.partial(
            batch_lines_repo.record_line,
            self.sessions,
            self.owner,
            task,
            ok=outcome.ok,
            result=outcome.result,
            usage=outcome.usage,
            now=self.clock.now(),
        )
        try:
            won = await asyncio.to_thread(record)
        except Exception:
            # The store hiccuped: hand the line back rather than leave it leased (and renewed) forever.
            log.exception("batch %s line %d: storing the result failed; the line will run again", *task.key)
            await asyncio.to_thread(batch_lines_repo.release_lines, self.sessions, self.owner, [task.key])
            return
        if not won:
            log.info("batch %s line %d: lease lost, result discarded", *task.key)

    async def _attempt(
        self, task: LineTask, principal: Principal, request: ChatCompletionRequest | TranscriptionRequest
    ) -> _Outcome:
        if isinstance(request, TranscriptionRequest):
            return await self._attempt_audio(task, principal, request)
        try:
            run = await start_chat(self.runtime, principal, request, internal_tier="batch")
        except RateLimited as error:
            return _rate_limited(error)
        except Exception as exc:
            return _error_line(task, ids.request_id(), exc, "admitting")
        try:
            body = await complete(run)
        except Exception as exc:
            return _error_line(task, run.request_id, exc, "processing")
        finally:
            with anyio.CancelScope(shield=True):
                await run.finish()
        usage = UsageEntry(
            task.project_id,
            run.model,
            "batch",
            run.request_id,
            run.usage.prompt_tokens,
            run.usage.completion_tokens,
        )
        return _Outcome(True, formats.output_line(task.custom_id, run.request_id, body), usage)

    async def _attempt_audio(
        self, task: LineTask, principal: Principal, request: TranscriptionRequest
    ) -> _Outcome:
        """An audio line: the same transcription road as HTTP, its audio given by the body's `url`.

        The output body is the json or verbose_json object (a `text` line gets the json shape, since
        an output line's body is JSON). The ledger bills its audio seconds at the batch price.
        """
        kind = "translate" if task.endpoint.endswith("/translations") else "transcribe"
        try:
            result = await transcribe(
                self.runtime, principal, request, None, task=kind, internal_tier="batch"
            )
        except RateLimited as error:
            return _rate_limited(error)
        except Exception as exc:
            return _error_line(task, ids.request_id(), exc, "processing")
        body = result.body(request.response_format, words=request.words)
        usage = UsageEntry(
            task.project_id, result.model, "batch", result.request_id, 0, 0, result.billed_seconds
        )
        return _Outcome(True, formats.output_line(task.custom_id, result.request_id, body), usage)


def _rate_limited(error: RateLimited) -> _Outcome:
    """Only when an operator configured batch limits: wait for the window, do not fail the line."""
    return _Outcome(False, "", retry_after=max(error.retry_after, 0.1))


def _error_line(task: LineTask, request_id: str, exc: Exception, doing: str) -> _Outcome:
    """A line that failed, with the error as the client may see it (errors.client_facing)."""
    message = f"The server had an error while {doing} this request."
    return _failed(task, request_id, client_facing(exc, message, f"batch {task.batch_id} line {task.line}"))


def _failed(task: LineTask, request_id: str, error: APIError) -> _Outcome:
    line = formats.failed_response_line(
        task.custom_id, request_id, error.status, error.body(), error.code, error.message
    )
    return _Outcome(False, line)
