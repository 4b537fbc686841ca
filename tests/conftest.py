"""Shared fixtures: the real model's weights (assembled once per checkout) and live servers on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
# Assembled weights are shared by every test server (491 MB: assemble once, not per data dir).
MODELS_DIR = Path(os.environ.get("TIERGATE_TEST_MODELS_DIR", ROOT / ".tiergate-test" / "models"))
TIERGATE = [sys.executable, "-m", "tiergate"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run the tiergate CLI against a data dir and return its stdout."""
    result = subprocess.run(
        [*TIERGATE, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"tiergate {' '.join(args)} failed: {result.stderr}\n{result.stdout}")
    return result.stdout


@dataclass
class LiveServer:
    data_dir: Path
    port: int
    process: subprocess.Popen[bytes]
    api_key: str
    log_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.root}/openai/v1"

    def cli(self, *args: str) -> str:
        return cli(self.data_dir, *args, env=self.extra_env)

    def new_key(self, project: str = "default") -> str:
        return self.cli("keys", "create", "--project", project).strip().splitlines()[-1]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL after 15 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(process: subprocess.Popen[bytes], url: str, log_path: Path, seconds: float) -> None:
    """Poll `url` until it answers 200; the process's log in the error if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError(f"{process.args[0]} not ready in time:\n{log_path.read_text(errors='replace')}")


def start_server(data_dir: Path, *flags: str, env: dict[str, str] | None = None) -> LiveServer:
    """Start `tiergate serve` as a real process and wait until /healthz says the model is loaded."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    extra_env = {"TIERGATE_MODELS_DIR": str(MODELS_DIR), **(env or {})}
    log_path = data_dir / "server.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [*TIERGATE, "serve", "--port", str(port), "--data-dir", str(data_dir), *flags],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, **extra_env},
    )
    wait_until_up(process, f"http://127.0.0.1:{port}/healthz", log_path, 180)
    server = LiveServer(data_dir, port, process, "", log_path, extra_env)
    server.api_key = server.new_key()
    return server


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Assemble and verify the embedded model once; every live server points at it."""
    from tiergate.config import Settings
    from tiergate.engines.registry import ModelRegistry
    from tiergate.engines.weights import ensure_weights

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    settings = Settings(models_dir=MODELS_DIR)
    for spec in ModelRegistry.from_settings(settings):
        if spec.engine == "llamacpp":
            ensure_weights(spec, MODELS_DIR)
    return MODELS_DIR


@pytest.fixture(scope="session")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One shared live server with the default settings (--parallel 2)."""
    live = start_server(tmp_path_factory.mktemp("server"))
    yield live
    live.stop()


@pytest.fixture
def server_factory(models_dir: Path, tmp_path: Path) -> Iterator[object]:
    """Start extra servers with their own flags; all are stopped at the end of the test."""
    started: list[LiveServer] = []

    def factory(*flags: str, data_dir: Path | None = None, env: dict[str, str] | None = None) -> LiveServer:
        live = start_server(data_dir or tmp_path / f"srv{len(started)}", *flags, env=env)
        started.append(live)
        return live

    yield factory
    for live in started:
        live.stop()
    shutil.rmtree(tmp_path, ignore_errors=True)
