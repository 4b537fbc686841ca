"""Engine throughput: aggregate tokens/s at 1, 2 and 4 concurrent streams, through the HTTP API and direct.

Four ways of running the same greedy generations:
    api       a live `tiergate serve --parallel N` driven over HTTP (streaming), as a client sees it
    engine    tiergate's LlamaCppEngine (one llama.cpp context per slot, one thread per slot)
    raw       llama-cpp-python called directly: N `Llama` objects, `create_completion` in N threads
    batched   one llama.cpp context decoding N sequences per llama_decode call (low-level API)

`engine` vs `raw` is our overhead; `raw` vs `batched` is the parallel-mode choice (the engine batches).

Measured on the 2-core dev machine (llama-cpp-python 0.3.36, Qwen2.5-Coder-0.5B Q4_K_M, 48 tokens per
stream, greedy; other jobs were running, so take the best of several runs as the quiet-machine figure):
    streams   one context per slot (engine v1 / raw)   one batched context (threads=2)
    1         24 / 10 tok/s                              30 tok/s
    2         29 / 18 tok/s  (1 thread per context)     33-36 tok/s
    4         18-21 / 16 tok/s                           37-50 tok/s (27 with 1 thread)
Under heavy contention (load 6-8) 2 threads collapsed (0.7-4 tok/s) and 1 thread held 6-9 tok/s:
llama.cpp's OpenMP threads spin at barriers, so oversubscribed cores stall them. With
OMP_WAIT_POLICY=PASSIVE the same loaded machine gave 5.2-6.2 tok/s at 2 streams x 2 threads instead of
1.2-1.5; on a quiet machine PASSIVE costs ~40% (19 vs 33 tok/s), so it is left to operators.

    .venv/bin/python bench/engine.py --streams 1 2 4 --max-tokens 64

The summary compares api with raw (llama-cpp-python called directly) at 1 stream, and api's aggregate at
4 streams with api at 1 stream: the issue's targets are >= 95% and >= 1.5x. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import llama_cpp
import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The repo root must be on sys.path before the shared test helpers import.
from tests.conftest import start_server  # noqa: E402

from tiergate.engines.base import SamplingParams  # noqa: E402
from tiergate.engines.llamacpp import LlamaCppEngine  # noqa: E402
from tiergate.engines.registry import DEFAULT_MODELS  # noqa: E402
from tiergate.engines.weights import ensure_weights  # noqa: E402

PROMPT = "Write a Python function that reads a CSV file and returns its rows as a list of dictionaries."
DEFAULT_DATA_DIR = Path(
    os.environ.get("TIERGATE_TEST_DATA_DIR", Path(__file__).parents[1] / ".tiergate-test")
)


@dataclass(frozen=True)
class Result:
    mode: str
    streams: int
    threads: int
    tokens: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def row(self) -> str:
        return (
            f"{self.mode:8} streams={self.streams} threads/ctx={self.threads} tokens={self.tokens:4} "
            f"time={self.seconds:6.2f}s  aggregate={self.tokens_per_second:6.1f} tok/s"
        )


def model_path(data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    return ensure_weights(DEFAULT_MODELS[0], data_dir / "models")


def default_threads(streams: int) -> int:
    return max(1, (os.cpu_count() or 1) // streams)


def measure_engine(path: Path, streams: int, max_tokens: int = 64, threads: int = 0) -> Result:
    engine = LlamaCppEngine(DEFAULT_MODELS[0], path, parallel=streams, threads=threads)
    prompt = engine.prepare([{"role": "user", "content": PROMPT}])
    params = SamplingParams(max_tokens=max_tokens, temperature=0)

    async def one(slot: int) -> int:
        return sum([d.tokens async for d in engine.generate(prompt, params, slot)])

    async def run() -> tuple[int, float]:
        await asyncio.gather(*(one(slot) for slot in range(streams)))  # warm-up: page in the weights
        # No prefix-cache advantage over the other modes (the decode thread is idle here).
        llama_cpp.llama_memory_clear(engine._memory, True)
        for cached in engine._kv:
            cached.clear()
        started = time.perf_counter()
        counts = await asyncio.gather(*(one(slot) for slot in range(streams)))
        return sum(counts), time.perf_counter() - started

    tokens, seconds = asyncio.run(run())
    asyncio.run(engine.close())
    return Result("engine", streams, engine.threads, tokens, seconds)


def measure_raw(path: Path, streams: int, max_tokens: int = 64, threads: int = 0) -> Result:
    threads = threads or default_threads(streams)
    llamas = [
        llama_cpp.Llama(str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
        for _ in range(streams)
    ]
    counts = [0] * streams

    def run(i: int) -> None:
        out = llamas[i].create_completion(PROMPT, max_tokens=max_tokens, temperature=0, top_k=0, min_p=0.0)
        counts[i] = out["usage"]["completion_tokens"]  # type: ignore[index]

    _threads_run(run, streams)  # warm-up
    for llama in llamas:
        llama.reset()
    started = time.perf_counter()
    _threads_run(run, streams)
    seconds = time.perf_counter() - started
    for llama in llamas:
        llama.close()
    return Result("raw", streams, threads, sum(counts), seconds)


def measure_batched(path: Path, streams: int, max_tokens: int = 64, threads: int = 0) -> Result:
    """One context, `streams` sequences advanced together by each llama_decode call (greedy)."""
    threads = threads or (os.cpu_count() or 1)
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = 2048 * streams
    cparams.n_batch = 512
    cparams.n_seq_max = streams
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    prompt = _tokenize(vocab, PROMPT)
    batch = llama_cpp.llama_batch_init(max(512, streams * len(prompt)), 0, streams)

    def fill(entries: Sequence[tuple[int, int, int, bool]]) -> None:
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, logits

    def run() -> int:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
        last = len(prompt) - 1
        fill([(t, p, s, p == last) for s in range(streams) for p, t in enumerate(prompt)])
        llama_cpp.llama_decode(ctx, batch)
        rows = [s * len(prompt) + last for s in range(streams)]
        produced = 0
        for step in range(max_tokens):
            picks = [
                int(
                    np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, row), shape=(n_vocab,)).argmax()
                )
                for row in rows
            ]
            produced += streams
            if step == max_tokens - 1:
                break
            fill([(tok, len(prompt) + step, s, True) for s, tok in enumerate(picks)])
            llama_cpp.llama_decode(ctx, batch)
            rows = list(range(streams))
        return produced

    run()  # warm-up
    started = time.perf_counter()
    tokens = run()
    seconds = time.perf_counter() - started
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    return Result("batched", streams, threads, tokens, seconds)


def measure_api(streams: int, max_tokens: int = 64) -> Result:
    """N concurrent streaming chat requests against a live server with --parallel N."""
    model_path()  # assembled once under .tiergate-test/models, where start_server points
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), "--parallel", str(streams), "--log-level", "warning")
        base, key = server.root, server.api_key
        try:
            body = {
                "model": DEFAULT_MODELS[0].id,
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "stream": True,
            }

            async def one(client: httpx.AsyncClient) -> int:
                tokens = 0
                async with client.stream("POST", "/openai/v1/chat/completions", json=body) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: {") and '"usage"' in line:
                            tokens = orjson.loads(line[6:])["x_groq"]["usage"]["completion_tokens"]
                return tokens

            async def run() -> tuple[int, float]:
                headers = {"authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600) as client:
                    await asyncio.gather(*(one(client) for _ in range(streams)))  # warm-up
                    started = time.perf_counter()
                    counts = await asyncio.gather(*(one(client) for _ in range(streams)))
                    return sum(counts), time.perf_counter() - started

            tokens, seconds = asyncio.run(run())
        finally:
            server.stop()
    return Result("api", streams, os.cpu_count() or 1, tokens, seconds)


def measure_direct(
    n_streams: int, max_tokens: int = 64, modes: Sequence[str] = ("engine", "raw")
) -> list[Result]:
    """Aggregate tokens/s for `n_streams` concurrent greedy generations in each mode."""
    path = model_path()
    runners = {"engine": measure_engine, "raw": measure_raw, "batched": measure_batched}
    if "api" in modes:
        runners["api"] = lambda _path, streams, tokens: measure_api(streams, tokens)
    return [runners[mode](path, n_streams, max_tokens) for mode in modes]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["api", "raw", "engine", "batched"])
    args = parser.parse_args(argv)
    print(f"cpu cores: {os.cpu_count()}  llama-cpp-python {llama_cpp.__version__}", flush=True)
    rates: dict[tuple[str, int], float] = {}
    for streams in args.streams:
        for result in measure_direct(streams, args.max_tokens, args.modes):
            rates[(result.mode, streams)] = result.tokens_per_second
            print(result.row(), flush=True)
    print("ratios (measured side by side in this run):")
    if ("api", 1) in rates and ("raw", 1) in rates:
        ratio = rates[("api", 1)] / rates[("raw", 1)]
        print(f"  api / raw llama-cpp-python, 1 stream: {ratio:.2f}  (target >= 0.95)")
    if ("api", 1) in rates and ("engine", 1) in rates:
        print(f"  api / engine in-process, 1 stream:   {rates[('api', 1)] / rates[('engine', 1)]:.2f}")
    for streams in args.streams:
        if streams > 1 and ("api", streams) in rates and ("api", 1) in rates:
            ratio = rates[("api", streams)] / rates[("api", 1)]
            print(f"  api aggregate {streams} streams / api 1 stream: {ratio:.2f}  (target at 4: >= 1.5)")


def _threads_run(target: object, count: int) -> None:
    workers = [threading.Thread(target=target, args=(i,)) for i in range(count)]  # type: ignore[arg-type]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _tokenize(vocab: llama_cpp.llama_vocab_p, text: str) -> list[int]:
    data = text.encode()
    buffer = (llama_cpp.llama_token * (len(data) + 8))()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, len(buffer), True, True)
    return list(buffer[:n])


if __name__ == "__main__":
    sys.exit(main())
