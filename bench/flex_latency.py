"""How fast a flex request is refused (498) while every slot decodes, by the decode threads' nice value.

Per round, one server per value of `--nice` (TIERGATE_DECODE_NICE), in turn: two long generations
fill both slots, and one client sends flex requests back to back (20 ms apart) until they finish.
Printed per server: the 498s' client-side latency p50/p99 and the long generations' tokens/s, then
the p99 ratio of each value against the first. Rounds alternate the servers, so drift on this noisy
machine hits each value alike.

    .venv/bin/python bench/flex_latency.py --rounds 2 --nice 0 5
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.stats import pct  # noqa: E402
from tests.conftest import start_server  # noqa: E402 - the repo root must be on sys.path first

MODEL = "qwen2.5-coder-0.5b-instruct"
STORY = [{"role": "user", "content": "Write a long story about a dragon."}]
HI = [{"role": "user", "content": "hi"}]


def one_round(nice: int, long_tokens: int) -> tuple[list[float], float]:
    """(498 latencies in seconds, aggregate tokens/s of the two long generations)."""
    server = start_server(
        Path(tempfile.mkdtemp(prefix="bench-flex-")),
        "--parallel",
        "2",
        env={"TIERGATE_DECODE_NICE": str(nice)},
    )
    url = f"{server.root}/openai/v1/chat/completions"
    headers = {"authorization": f"Bearer {server.api_key}"}
    rates: list[float] = []

    def generate_long() -> None:
        start = time.perf_counter()
        body = {"model": MODEL, "messages": STORY, "max_tokens": long_tokens, "temperature": 0}
        reply = httpx.post(url, json=body, headers=headers, timeout=300).json()
        rates.append(reply["usage"]["completion_tokens"] / (time.perf_counter() - start))

    try:
        for _ in range(2):  # the scheduler learns the model's speed, so flex can be refused at once
            httpx.post(
                url, json={"model": MODEL, "messages": HI, "max_tokens": 16}, headers=headers, timeout=60
            )
        longs = [threading.Thread(target=generate_long) for _ in range(2)]
        for thread in longs:
            thread.start()
        time.sleep(1.0)
        refused: list[float] = []
        flex = {"model": MODEL, "messages": HI, "max_tokens": 4, "service_tier": "flex"}
        with httpx.Client(timeout=30, headers=headers) as client:
            while any(thread.is_alive() for thread in longs):
                start = time.perf_counter()
                if client.post(url, json=flex).status_code == 498:
                    refused.append(time.perf_counter() - start)
                time.sleep(0.02)
        for thread in longs:
            thread.join()
        return refused, sum(rates)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nice", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--long-tokens", type=int, default=300)
    args = parser.parse_args()
    latencies: dict[int, list[float]] = {n: [] for n in args.nice}
    rates: dict[int, list[float]] = {n: [] for n in args.nice}
    for round_no in range(args.rounds):
        for nice in args.nice:
            refused, rate = one_round(nice, args.long_tokens)
            latencies[nice] += refused
            rates[nice].append(rate)
            print(
                f"round {round_no + 1} nice={nice}: {len(refused)} refusals, 498 p50 "
                f"{pct(refused, 0.5) * 1000:.1f} ms p99 {pct(refused, 0.99) * 1000:.1f} ms, "
                f"long generations {rate:.1f} tok/s",
                flush=True,
            )
    base = args.nice[0]
    for nice in args.nice:
        values = latencies[nice]
        print(
            f"nice={nice}: n={len(values)} 498 p50 {pct(values, 0.5) * 1000:.1f} ms "
            f"p99 {pct(values, 0.99) * 1000:.1f} ms; decode {sum(rates[nice]) / len(rates[nice]):.1f} tok/s; "
            f"p99 vs nice={base}: {pct(values, 0.99) / pct(latencies[base], 0.99):.2f}x, "
            f"tok/s vs nice={base}: {sum(rates[nice]) / sum(rates[base]):.2f}x"
        )


if __name__ == "__main__":
    main()
