"""Service tiers under overload: a mixed-tier open-loop load against a tiered server and a FIFO one.

The script starts `tiergate serve --parallel N` itself, measures its capacity (requests per second
with every slot busy), then offers `--load` times that capacity for `--duration` seconds as Poisson
arrivals: 10% performance, 60% on_demand, 30% flex. Every request streams, so the client sees its
time to first token; usage.queue_time comes from the final chunk. The same arrival schedule (same
seed) then runs against a second server started with `--fifo`, the baseline where all tiers share
one queue and flex never gives up.

Printed per tier: served / 498 / 429 counts, p50 and p99 of queue time and time to first token, the
client-side latency of the 498 answers, and tiered/FIFO ratios. The targets it checks:
    performance p99 queue time <= the service time of one request
    flex 498 decision p99 <= 20 ms (client-side, request sent -> 498 received)
    on_demand p99 queue time <= FIFO's on_demand p99

    .venv/bin/python bench/tiers.py --duration 60
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

MODEL = "qwen2.5-coder-0.5b-instruct"
CHAT = "/openai/v1/chat/completions"
TIERS = ("performance", "on_demand", "flex")
ROOT = Path(__file__).resolve().parents[1]
TIERGATE = (sys.executable, "-m", "tiergate")
PROMPTS = (
    "Write a Python function that reverses a string.",
    "Explain what a hash map is in one paragraph.",
    "Write a SQL query that counts rows per day.",
    "What does the `yield` keyword do in Python?",
)


@dataclass(frozen=True)
class Arrival:
    at: float
    tier: str
    prompt: str


@dataclass
class Outcome:
    tier: str
    status: int
    # Client-side seconds from sending to the response head (the whole decision for a 498/429).
    head: float
    ttft: float | None = None
    queue_time: float | None = None
    service_time: float | None = None
    served_tier: str | None = None


@dataclass
class Run:
    label: str
    outcomes: list[Outcome] = field(default_factory=list)
    unfinished: int = 0

    def of(self, tier: str, status: int | None = None) -> list[Outcome]:
        return [o for o in self.outcomes if o.tier == tier and (status is None or o.status == status)]


# -- the server ------------------------------------------------------------------------------------


@dataclass
class Server:
    root: str
    key: str
    performance_key: str
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(data_dir: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*TIERGATE, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return result.stdout


@contextmanager
def serve(data_dir: Path, *flags: str) -> Iterator[Server]:
    """`tiergate serve` in a fresh data dir, ready (model loaded) and with a default + performance key."""
    env = dict(os.environ)
    shared_models = ROOT / ".tiergate-test" / "models"
    if "TIERGATE_MODELS_DIR" not in env and shared_models.is_dir():
        env["TIERGATE_MODELS_DIR"] = str(shared_models)
    data_dir.mkdir(parents=True)
    port = _free_port()
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [
            *TIERGATE,
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            *flags,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        root = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise SystemExit(f"server exited:\n{(data_dir / 'server.log').read_text()}")
            try:
                if httpx.get(root + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become ready in 300 s")
            time.sleep(0.2)
        key = _cli(data_dir, env, "keys", "create").strip().splitlines()[-1]
        _cli(data_dir, env, "projects", "create", "perf", "--performance")
        performance_key = _cli(data_dir, env, "keys", "create", "--project", "perf").strip().splitlines()[-1]
        yield Server(root, key, performance_key, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# -- the load --------------------------------------------------------------------------------------


async def one(client: httpx.AsyncClient, server: Server, tier: str, prompt: str, max_tokens: int) -> Outcome:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "service_tier": tier,
    }
    key = server.performance_key if tier == "performance" else server.key
    headers = {"authorization": f"Bearer {key}"}
    sent = time.perf_counter()
    async with client.stream("POST", server.root + CHAT, json=body, headers=headers) as response:
        outcome = Outcome(tier, response.status_code, time.perf_counter() - sent)
        if response.status_code != 200:
            await response.aread()
            return outcome
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = orjson.loads(line[6:])
            outcome.served_tier = chunk.get("service_tier", outcome.served_tier)
            choices = chunk.get("choices") or []
            if outcome.ttft is None and choices and choices[0]["delta"].get("content"):
                outcome.ttft = time.perf_counter() - sent
            usage = (chunk.get("x_groq") or {}).get("usage")
            if usage:
                outcome.queue_time = usage["queue_time"]
                outcome.service_time = usage["total_time"]
    return outcome


def _client() -> httpx.AsyncClient:
    # No client-side pool limit: a request waiting for a connection would hide the server's queue.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    return httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(900, connect=30))


async def calibrate(server: Server, parallel: int, max_tokens: int, rounds: int) -> tuple[float, float]:
    """(capacity in requests/s with every slot busy, median service time of one request)."""
    async with _client() as client:
        await one(client, server, "on_demand", PROMPTS[0], max_tokens)  # warm-up: page in weights

        async def worker(index: int) -> list[Outcome]:
            return [
                await one(client, server, "on_demand", PROMPTS[(index + r) % len(PROMPTS)], max_tokens)
                for r in range(rounds)
            ]

        started = time.perf_counter()
        done = await asyncio.gather(*(worker(i) for i in range(parallel)))
        elapsed = time.perf_counter() - started
    outcomes = [o for batch in done for o in batch]
    service = statistics.median(o.service_time or 0.0 for o in outcomes)
    return len(outcomes) / elapsed, service


def schedule(rate: float, duration: float, mix: dict[str, float], seed: int) -> list[Arrival]:
    """Poisson arrivals at `rate` per second for `duration` seconds, tiers in `mix` proportions.

    Tiers are dealt from shuffled decks of 10 (1 performance, 6 on_demand, 3 flex for the default
    mix), so even a short run gets the exact mix rather than a random draw of it.
    """
    rng = random.Random(seed)
    total = sum(mix.values())
    deck = [tier for tier, share in mix.items() for _ in range(round(10 * share / total))]
    arrivals: list[Arrival] = []
    hand: list[str] = []
    at = rng.expovariate(rate)
    while at < duration:
        if not hand:
            hand = rng.sample(deck, len(deck))
        arrivals.append(Arrival(at, hand.pop(), rng.choice(PROMPTS)))
        at += rng.expovariate(rate)
    return arrivals


async def drive(
    server: Server, label: str, arrivals: Sequence[Arrival], max_tokens: int, drain: float
) -> Run:
    run = Run(label)
    async with _client() as client:
        start = time.perf_counter()

        async def fire(arrival: Arrival) -> None:
            await asyncio.sleep(max(0.0, start + arrival.at - time.perf_counter()))
            try:
                run.outcomes.append(await one(client, server, arrival.tier, arrival.prompt, max_tokens))
            except httpx.HTTPError:
                run.outcomes.append(Outcome(arrival.tier, 0, time.perf_counter() - start - arrival.at))

        tasks = [asyncio.create_task(fire(a)) for a in arrivals]
        last = arrivals[-1].at if arrivals else 0.0
        _, pending = await asyncio.wait(tasks, timeout=last + drain)
        # Still queued at the deadline: left out of the percentiles, so counted and printed.
        run.unfinished = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return run


# -- the report ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(value: float | None) -> str:
    return f"{'-':>8}" if value is None else f"{value * 1000:8.0f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:5.2f}"


def stats(run: Run, tier: str) -> dict[str, float | None]:
    served = run.of(tier, 200)
    rejected = run.of(tier, 498)
    queue = [o.queue_time for o in served if o.queue_time is not None]
    ttft = [o.ttft for o in served if o.ttft is not None]
    return {
        "queue_p50": pct(queue, 50),
        "queue_p99": pct(queue, 99),
        "ttft_p50": pct(ttft, 50),
        "ttft_p99": pct(ttft, 99),
        "flex498_p50": pct([o.head for o in rejected], 50),
        "flex498_p99": pct([o.head for o in rejected], 99),
    }


def report(tiered: Run, fifo: Run, service: float) -> list[str]:
    lines = [
        f"{'run':7} {'tier':12} {'sent':>5} {'200':>5} {'498':>5} {'429':>5} {'other':>5} "
        f"{'queue p50':>9} {'p99 ms':>8} {'ttft p50':>9} {'p99 ms':>8} {'498 p50':>8} {'p99 ms':>8}"
    ]
    for run in (tiered, fifo):
        for tier in TIERS:
            s = stats(run, tier)
            counts = [len(run.of(tier, status)) for status in (200, 498, 429)]
            other = len(run.of(tier)) - sum(counts)
            lines.append(
                f"{run.label:7} {tier:12} {len(run.of(tier)):5} {counts[0]:5} {counts[1]:5} {counts[2]:5} "
                f"{other:5} {ms(s['queue_p50']):>9} {ms(s['queue_p99'])} {ms(s['ttft_p50']):>9} "
                f"{ms(s['ttft_p99'])} {ms(s['flex498_p50'])} {ms(s['flex498_p99'])}"
            )
        if run.unfinished:
            lines.append(f"{run.label:7} {run.unfinished} requests still unfinished at the drain deadline")
    lines.append("")
    columns = ("queue_p50", "queue_p99", "ttft_p50", "ttft_p99")
    lines.append(f"{'ratio tiered/FIFO':20}" + "".join(f" {c.replace('_', ' '):>9}" for c in columns))
    for tier in TIERS:
        a, b = stats(tiered, tier), stats(fifo, tier)
        lines.append(f"{tier:20}" + "".join(f" {ratio(a[c], b[c]):>9}" for c in columns))
    perf, od, fifo_od = stats(tiered, "performance"), stats(tiered, "on_demand"), stats(fifo, "on_demand")
    flex = stats(tiered, "flex")

    def check(name: str, value: float | None, bound: float | None) -> str:
        if value is None or bound is None:
            return f"  [n/a ] {name}: no samples"
        verdict = "PASS" if value <= bound else "FAIL"
        return f"  [{verdict}] {name}: {value * 1000:.1f} ms <= {bound * 1000:.1f} ms"

    lines += [
        "",
        "targets",
        check("performance p99 queue time <= one request's service time", perf["queue_p99"], service),
        check("flex 498 decision p99 <= 20 ms", flex["flex498_p99"], 0.020),
        check("on_demand p99 queue time <= FIFO on_demand p99", od["queue_p99"], fifo_od["queue_p99"]),
    ]
    return lines


def parse_mix(text: str) -> dict[str, float]:
    mix = {name: float(share) for name, share in (part.split("=") for part in text.split(","))}
    unknown = set(mix) - set(TIERS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown tiers {sorted(unknown)}")
    return mix


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of offered load per server")
    parser.add_argument("--load", type=float, default=3.0, help="offered load as a multiple of capacity")
    parser.add_argument(
        "--rate", type=float, help="offered requests/s, instead of --load x measured capacity"
    )
    parser.add_argument("--parallel", type=int, default=2, help="server slots (--parallel)")
    parser.add_argument(
        "--threads", type=int, default=0, help="llama.cpp threads (--threads; 0 = every core)"
    )
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("performance=0.1,on_demand=0.6,flex=0.3"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for the backlog")
    parser.add_argument("--calibration-rounds", type=int, default=4, help="requests per slot to calibrate")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tiergate-bench-"))
    try:
        engine = ("--parallel", str(args.parallel), "--threads", str(args.threads))
        with serve(work / "tiered", *engine) as server:
            capacity, service = asyncio.run(
                calibrate(server, args.parallel, args.max_tokens, args.calibration_rounds)
            )
            rate = args.rate or capacity * args.load
            arrivals = schedule(rate, args.duration, args.mix, args.seed)
            print(
                f"capacity {capacity:.2f} req/s (service time {service * 1000:.0f} ms, "
                f"{args.max_tokens} tokens, --parallel {args.parallel}); offering {rate:.2f} req/s "
                f"({rate / capacity:.1f}x) for {args.duration:.0f} s = {len(arrivals)} requests",
                flush=True,
            )
            tiered = asyncio.run(drive(server, "tiered", arrivals, args.max_tokens, args.drain))
        print("tiered run done; starting the FIFO server", flush=True)
        with serve(work / "fifo", *engine, "--fifo") as server:
            asyncio.run(calibrate(server, args.parallel, args.max_tokens, 1))  # same warm-up
            fifo = asyncio.run(drive(server, "fifo", arrivals, args.max_tokens, args.drain))
        print("\n".join(report(tiered, fifo, service)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
