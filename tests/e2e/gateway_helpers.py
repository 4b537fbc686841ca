"""Real upstreams for the gateway tests: llama-cpp-python's own OpenAI-compatible server on the embedded
GGUF, and gateway metrics read back by upstream."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LiveServer, free_port, stop_process, wait_until_up
from tiergate.config import Settings
from tiergate.engines.registry import ModelRegistry
from tiergate.engines.weights import ensure_weights

MODEL = "qwen2.5-coder-0.5b-instruct"


def gguf_path(models_dir: Path) -> Path:
    spec = ModelRegistry.from_settings(Settings(models_dir=models_dir)).resolve(MODEL)
    return ensure_weights(spec, models_dir)


@dataclass
class LlamaServer:
    """`python -m llama_cpp.server` on loopback; restartable on the same port (failover tests)."""

    gguf: Path
    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        self.port = self.port or free_port()
        log = self.log_path.open("ab")
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--verbose", "False"]
        # Its default cuts a running stream short whenever another request arrives (our health checks
        # too); docs/deployment.md says to run it this way.
        command += ["--interrupt_requests", "False"]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until_up(self.process, f"{self.base_url}/models", self.log_path, 120)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


def upstream_counts(gateway: LiveServer) -> dict[tuple[str, str], float]:
    """(upstream name, outcome) -> requests, from the gateway's /metrics."""
    text = httpx.get(f"{gateway.root}/metrics", timeout=5).text
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "tiergate_upstream_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["upstream"], sample.labels["outcome"])] = sample.value
    return counts


def upstream_up(gateway: LiveServer, upstream: str) -> float | None:
    text = httpx.get(f"{gateway.root}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        if family.name == "tiergate_upstream_up":
            for sample in family.samples:
                if sample.labels["upstream"] == upstream:
                    return sample.value
    return None
