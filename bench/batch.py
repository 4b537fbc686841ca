"""Batch on spare capacity: throughput alone, and what it costs a synchronous on_demand load beside it.

Phases against one live server (`--parallel 2`, the real model, max_tokens small):
    sync      the N lines sent synchronously, back to back (one at a time)
    batch     the same N lines as one batch (uses every idle slot; a second line per slot waits
              in the batch queue, ready)
    batch-1   the same batch on a second server with one line per slot (TIERGATE_BATCH_CONCURRENCY
              = slots: no look-ahead), for the look-ahead's ratio
    od        an on_demand load alone: one closed-loop client (about half the slots) for --seconds
    od+batch  the same load while a batch runs beside it
Printed: wall times and the batch/sync ratio; on_demand p50/p99 queue time (usage.queue_time) and
end-to-end latency without and with the batch, and their ratios; mean slot utilisation (sampled
from /metrics tiergate_slots_busy) per phase; preemptions are visible as batch lines re-run.

    .venv/bin/python bench/batch.py --lines 200 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import groq
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import pct  # noqa: E402
from tests.conftest import start_server  # noqa: E402 - the repo root must be on sys.path first

MODEL = "qwen2.5-coder-0.5b-instruct"
PROMPTS = ["Say hi.", "Name a color.", "Count to two.", "Name a fruit."]


def line(index: int, max_tokens: int) -> dict[str, object]:
    return {
        "custom_id": f"line-{index}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": MODEL,
            "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
            "max_tokens": max_tokens,
            "temperature": 0,
        },
    }


class SlotSampler(threading.Thread):
    """Samples the busy-slot gauge every 0.2 s; `mean()` is the utilisation over the window."""

    def __init__(self, root: str, slots: int) -> None:
        super().__init__(daemon=True)
        self.root, self.slots = root, slots
        self.samples: list[float] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.stop_event.is_set():
                text = http.get(f"{self.root}/metrics").text
                busy = sum(
                    float(row.rsplit(" ", 1)[1])
                    for row in text.splitlines()
                    if row.startswith("tiergate_slots_busy{")
                )
                self.samples.append(busy / self.slots)
                time.sleep(0.2)

    def mean(self) -> float:
        self.stop_event.set()
        self.join()
        return statistics.fmean(self.samples) if self.samples else 0.0


def run_batch(api: groq.Groq, lines: list[dict[str, object]]) -> tuple[float, str]:
    data = ("\n".join(json.dumps(item) for item in lines) + "\n").encode()
    start = time.perf_counter()
    file_id = api.files.create(file=("bench.jsonl", data), purpose="batch").id
    batch = api.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.2)
        batch = api.batches.retrieve(batch.id)
    return time.perf_counter() - start, batch.status


def on_demand_load(api: groq.Groq, seconds: float, max_tokens: int) -> tuple[list[float], list[float]]:
    """One closed-loop client: (queue times, latencies) of every request."""
    queue, latency = [], []
    deadline = time.perf_counter() + seconds
    index = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        reply = api.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
            max_tokens=max_tokens,
            temperature=0,
        )
        latency.append(time.perf_counter() - start)
        queue.append(reply.usage.queue_time or 0.0)  # type: ignore[union-attr]
        index += 1
        time.sleep(0.05)  # a little think time keeps the load near half of two slots
    return queue, latency


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    lines = [line(i, args.max_tokens) for i in range(args.lines)]
    server = start_server(Path(tempfile.mkdtemp(prefix="bench-batch-")), "--parallel", str(args.parallel))
    api = groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, timeout=120)
    try:
        sampler = SlotSampler(server.root, args.parallel)
        sampler.start()
        start = time.perf_counter()
        for item in lines:
            api.chat.completions.create(**item["body"])  # type: ignore[arg-type]
        sync_wall, sync_util = time.perf_counter() - start, sampler.mean()

        sampler = SlotSampler(server.root, args.parallel)
        sampler.start()
        batch_wall, status = run_batch(api, lines)
        batch_util = sampler.mean()

        # The same batch without look-ahead, on its own server (run here, in the same bench run).
        plain = start_server(
            Path(tempfile.mkdtemp(prefix="bench-batch-plain-")),
            "--parallel",
            str(args.parallel),
            env={"TIERGATE_BATCH_CONCURRENCY": str(args.parallel)},
        )
        try:
            plain_api = groq.Groq(base_url=plain.root, api_key=plain.api_key, max_retries=0, timeout=120)
            sampler = SlotSampler(plain.root, args.parallel)
            sampler.start()
            plain_wall, _ = run_batch(plain_api, lines)
            plain_util = sampler.mean()
        finally:
            plain.stop()

        sampler = SlotSampler(server.root, args.parallel)
        sampler.start()
        od_queue, od_latency = on_demand_load(api, args.seconds, args.max_tokens)
        od_util = sampler.mean()

        # The batch gets far more lines than the window can finish, so it runs the whole time.
        big = [line(i, args.max_tokens) for i in range(args.lines * 5)]
        data = ("\n".join(json.dumps(item) for item in big) + "\n").encode()
        file_id = api.files.create(file=("beside.jsonl", data), purpose="batch").id
        beside = api.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        time.sleep(2)  # let it fill the idle slots first
        sampler = SlotSampler(server.root, args.parallel)
        sampler.start()
        mix_queue, mix_latency = on_demand_load(api, args.seconds, args.max_tokens)
        mix_util = sampler.mean()
        progressed = api.batches.retrieve(beside.id).request_counts
        api.batches.cancel(beside.id)
    finally:
        server.stop()

    n = args.lines
    print(f"lines={n} max_tokens={args.max_tokens} parallel={args.parallel} (batch {status})")
    print(f"sync back-to-back: {sync_wall:7.1f} s  ({n / sync_wall:5.2f} lines/s, util {sync_util:.0%})")
    print(f"batch alone:       {batch_wall:7.1f} s  ({n / batch_wall:5.2f} lines/s, util {batch_util:.0%})")
    print(f"  ratio sync/batch wall time: {sync_wall / batch_wall:.2f}x")
    print(f"batch, 1 line/slot: {plain_wall:6.1f} s  ({n / plain_wall:5.2f} lines/s, util {plain_util:.0%})")
    look_ahead = _ratio(batch_util, plain_util)
    print(f"  look-ahead: wall time {plain_wall / batch_wall:.2f}x faster, utilisation {look_ahead}")
    print(f"on_demand alone:    n={len(od_queue)} util {od_util:.0%}")
    print(f"  queue p50 {pct(od_queue, 0.5) * 1000:7.1f} ms  p99 {pct(od_queue, 0.99) * 1000:7.1f} ms")
    print(f"  latency p50 {pct(od_latency, 0.5) * 1000:7.1f} ms  p99 {pct(od_latency, 0.99) * 1000:7.1f} ms")
    done = (progressed.completed + progressed.failed) if progressed else 0
    print(f"on_demand + batch:  n={len(mix_queue)} util {mix_util:.0%} (batch lines done meanwhile: {done})")
    print(f"  queue p50 {pct(mix_queue, 0.5) * 1000:7.1f} ms  p99 {pct(mix_queue, 0.99) * 1000:7.1f} ms")
    print(
        f"  latency p50 {pct(mix_latency, 0.5) * 1000:7.1f} ms  p99 {pct(mix_latency, 0.99) * 1000:7.1f} ms"
    )
    print(
        "  ratios with/without batch: "
        f"queue p50 {_ratio(pct(mix_queue, 0.5), pct(od_queue, 0.5))}, "
        f"queue p99 {_ratio(pct(mix_queue, 0.99), pct(od_queue, 0.99))}, "
        f"latency p50 {_ratio(pct(mix_latency, 0.5), pct(od_latency, 0.5))}, "
        f"latency p99 {_ratio(pct(mix_latency, 0.99), pct(od_latency, 0.99))}, "
        f"utilisation {_ratio(mix_util, od_util)}"
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a (baseline 0)"


if __name__ == "__main__":
    main()
