"""Gateway overhead, side by side: the floor, tiergate in front of it, LiteLLM in front of it.

One run, on loopback, the same requests for each target:
    floor     bench/responder.py, an OpenAI-compatible server that answers at once
    tiergate  `tiergate serve` with one upstream model pointing at the floor
    litellm   the LiteLLM proxy (`litellm[proxy]`, in its own venv: bench/.litellm-venv) pointing at it

Load comes from wrk (Debian package `wrk`; C, so the load generator costs little CPU) with a
fixed duration per cell: non-streaming and streaming chat completions at 1, 16 and 64 concurrent
connections. Printed per cell: requests/s, p50/p99 latency, the latency each gateway adds over
the floor's at the same cell, CPU seconds the gateway process used per request (from
/proc/<pid>/stat, the whole process tree), and the ratios tiergate/LiteLLM.

Targets: tiergate's added p50 <= 2 ms at concurrency 1; tiergate's throughput >= 3x LiteLLM's at 64.

    make bench-gateway           # creates bench/.litellm-venv on first use, then runs this
    .venv/bin/python bench/gateway.py --duration 8
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
LITELLM = ROOT / "bench" / ".litellm-venv" / "bin" / "litellm"
MODEL = "bench-model"
CONCURRENCY = (1, 16, 64)
MODES = ("json", "stream")
TICKS = os.sysconf("SC_CLK_TCK")
_RESULT = re.compile(r"^RESULT (\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class Cell:
    target: str
    mode: str
    clients: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int
    cpu_per_request_ms: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    api_key: str
    pid: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: process exited\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s\n{log.read_text()[-4000:]}")


@contextmanager
def _process(args: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            _wait_ready(ready_url, process, log)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and every descendant (uvicorn/LiteLLM workers included)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is not None:
            total += (int(fields[11]) + int(fields[12])) / TICKS
        todo.extend(children.get(current, []))
    return total


def _wrk_script(directory: Path, api_key: str, stream: bool) -> Path:
    body = orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 16,
            "stream": stream,
        }
    ).decode()
    script = directory / f"wrk-{'stream' if stream else 'json'}.lua"
    script.write_text(
        f"""
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {api_key}"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "us": %d, "p50": %d, "p99": %d, "failed": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""
    )
    return script


def _wrk(url: str, script: Path, clients: int, seconds: float) -> dict[str, int]:
    result = subprocess.run(
        [
            "wrk",
            "-t",
            str(min(clients, 2)),
            "-c",
            str(clients),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = _RESULT.search(result.stdout)
    if match is None:
        raise SystemExit(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
    return orjson.loads(match.group(1))


def measure(target: Target, scripts: dict[str, Path], seconds: float, warmup: float) -> list[Cell]:
    cells = []
    url = target.url + "/chat/completions"
    for mode in MODES:
        for clients in CONCURRENCY:
            _wrk(url, scripts[mode], clients, warmup)
            before = _tree_cpu_seconds(target.pid)
            raw = _wrk(url, scripts[mode], clients, seconds)
            cpu = _tree_cpu_seconds(target.pid) - before
            requests = raw["requests"]
            cell = Cell(
                target=target.name,
                mode=mode,
                clients=clients,
                requests=requests,
                seconds=raw["us"] / 1e6,
                p50_ms=raw["p50"] / 1000,
                p99_ms=raw["p99"] / 1000,
                failed=raw["failed"],
                cpu_per_request_ms=cpu / requests * 1000 if requests else None,
            )
            print(
                f"  {target.name:9} {mode:6} c={clients:<3} {cell.rps:8.0f} req/s  p50 {cell.p50_ms:7.2f} ms"
                f"  p99 {cell.p99_ms:7.2f} ms  failed {cell.failed}",
                flush=True,
            )
            cells.append(cell)
    return cells


@contextmanager
def floor(work: Path) -> Iterator[Target]:
    port = _free_port()
    args = [sys.executable, str(ROOT / "bench" / "responder.py"), "--port", str(port)]
    url = f"http://127.0.0.1:{port}/v1"
    with _process(args, url + "/models", work / "floor.log") as pid:
        yield Target("floor", url, "none", pid)


def _tiergate_cli(data_dir: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "tiergate", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


@contextmanager
def tiergate(work: Path, upstream: str) -> Iterator[Target]:
    data_dir = work / "tiergate"
    data_dir.mkdir()
    config = work / "tiergate.toml"
    # Limits far above what the benchmark offers: it measures the road, not the 429s.
    config.write_text(
        f"""
load_models = ["{MODEL}"]

[[models]]
id = "{MODEL}"
engine = "upstream"
context_window = 8192
max_completion_tokens = 1024

[[models.options.upstreams]]
base_url = "{upstream}"
kind = "generic"
max_concurrency = 256

[limits."{MODEL}"]
rpm = "100M"
rpd = "1B"
tpm = "1B"
tpd = "100B"
"""
    )
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "tiergate",
        "serve",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with _process(args, f"http://127.0.0.1:{port}/healthz", work / "tiergate.log") as pid:
        key = _tiergate_cli(data_dir, "keys", "create").strip().splitlines()[-1]
        yield Target("tiergate", f"http://127.0.0.1:{port}/openai/v1", key, pid)


@contextmanager
def litellm(work: Path, upstream: str) -> Iterator[Target]:
    if not LITELLM.exists():
        raise SystemExit(f"{LITELLM} is missing: run `make bench-gateway` (it creates bench/.litellm-venv)")
    config = work / "litellm.yaml"
    config.write_text(
        f"""
model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {upstream}
      api_key: none
litellm_settings:
  telemetry: false
  drop_params: true
"""
    )
    port = _free_port()
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_TELEMETRY": "False",
    }
    args = [
        str(LITELLM),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    with _process(args, f"http://127.0.0.1:{port}/health/liveliness", work / "litellm.log", env) as pid:
        yield Target("litellm", f"http://127.0.0.1:{port}/v1", "none", pid)


GATEWAYS = {"tiergate": tiergate, "litellm": litellm}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def report(cells: list[Cell]) -> list[str]:
    by = {(c.target, c.mode, c.clients): c for c in cells}
    lines = [
        "| mode | clients | target | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        for clients in CONCURRENCY:
            base = by[("floor", mode, clients)]
            for name in ("floor", "tiergate", "litellm"):
                cell = by.get((name, mode, clients))
                if cell is None:
                    continue
                added = (
                    ("", "")
                    if name == "floor"
                    else (f"{cell.p50_ms - base.p50_ms:.2f}", f"{cell.p99_ms - base.p99_ms:.2f}")
                )
                cpu = f"{cell.cpu_per_request_ms:.2f}" if cell.cpu_per_request_ms is not None else "n/a"
                failed = f" ({cell.failed} failed)" if cell.failed else ""
                lines.append(
                    f"| {mode} | {clients} | {name} | {cell.rps:.0f}{failed} | {cell.p50_ms:.2f} | "
                    f"{cell.p99_ms:.2f} | {added[0]} | {added[1]} | {cpu} |"
                )
    lines += ["", "| mode | clients | req/s tiergate/LiteLLM | added p50 tiergate/LiteLLM | CPU/req ratio |"]
    lines.append("|---|---|---|---|---|")
    for mode in MODES:
        for clients in CONCURRENCY:
            base, ours, theirs = (by.get((n, mode, clients)) for n in ("floor", "tiergate", "litellm"))
            if base is None or ours is None or theirs is None:
                continue
            lines.append(
                f"| {mode} | {clients} | {_ratio(ours.rps, theirs.rps)} | "
                f"{_ratio(ours.p50_ms - base.p50_ms, theirs.p50_ms - base.p50_ms)} | "
                f"{_ratio(ours.cpu_per_request_ms, theirs.cpu_per_request_ms)} |"
            )
    return lines


def targets_met(cells: list[Cell]) -> list[str]:
    by = {(c.target, c.mode, c.clients): c for c in cells}
    out = []
    base, ours = by.get(("floor", "json", 1)), by.get(("tiergate", "json", 1))
    if base and ours:
        added = ours.p50_ms - base.p50_ms
        out.append(f"tiergate added p50 at c=1 (json): {added:.2f} ms (target <= 2 ms: {added <= 2})")
    for mode in MODES:
        ours, theirs = by.get(("tiergate", mode, 64)), by.get(("litellm", mode, 64))
        if ours and theirs:
            ratio = ours.rps / theirs.rps
            out.append(
                f"throughput tiergate/LiteLLM at c=64 ({mode}): {ratio:.2f}x (target >= 3x: {ratio >= 3})"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each cell")
    parser.add_argument(
        "--gateways", default="tiergate,litellm", help="which gateways to measure, comma-separated"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    cells: list[Cell] = []
    with tempfile.TemporaryDirectory(prefix="tiergate-gateway-") as tmp:
        work = Path(tmp)
        with floor(work) as base:
            scripts = {mode: _wrk_script(work, base.api_key, mode == "stream") for mode in MODES}
            print("floor (the responder alone)", flush=True)
            cells += measure(base, scripts, args.duration, args.warmup)
            for name in args.gateways.split(","):
                with GATEWAYS[name](work, base.url) as gateway:
                    scripts = {mode: _wrk_script(work, gateway.api_key, mode == "stream") for mode in MODES}
                    print(f"{name} in front of the floor", flush=True)
                    cells += measure(gateway, scripts, args.duration, args.warmup)
    print()
    print("\n".join(report(cells)))
    print()
    print("\n".join(targets_met(cells)))


if __name__ == "__main__":
    main()
