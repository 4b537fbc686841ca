"""Settings: CLI flags > env TIERGATE_* > optional TOML file > defaults."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERGATE_", extra="ignore")

    data_dir: Path = Path(".tiergate")
    # Where assembled model weights live; several data dirs (tests, replicas) may share one.
    models_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    parallel: int = 2
    # Threads llama.cpp uses for its one batched decode of all slots; 0 means every core.
    threads: int = 0
    # How much nicer than the server the decode thread (and the llama.cpp threads it starts) runs: the
    # event loop then gets a core at once when a request arrives (flex 498 p99 halved, no throughput
    # lost on an otherwise idle machine: docs/benchmarks.md). 0 keeps them equal.
    decode_nice: int = 5
    database_url: str | None = None
    redis_url: str | None = None
    max_body_bytes: int = 50 * 1024 * 1024
    # Batch input files (docs: 200 MB and 50,000 lines; the API reference says 100 MB).
    max_file_bytes: int = 200 * 1024 * 1024
    max_file_lines: int = 50_000
    # A batch line's lease: a crashed server's lines are picked up again this long after its last renewal.
    batch_lease_seconds: float = 30.0
    # How often the batch runner looks for work it was not told about (other processes, expiry).
    batch_poll_seconds: float = 0.5
    # Batch lines run at once per process; 0 means the number of slots of the loaded models.
    batch_concurrency: int = 0
    # Seconds a cached API key / limit lookup may be served before re-reading the store;
    # CLI changes must reach a running server within 1 s.
    cache_ttl: float = 0.5
    flex_wait_ms: float = 100.0
    reserved_performance_slots: int = 0
    # Plain FIFO scheduling (no tiers) for benchmarks that compare against it.
    fifo: bool = False
    # Extra or overriding [[models]] entries, from the TOML config file.
    models: list[dict[str, Any]] = Field(default_factory=list)
    # Organization-level rate limits per model ([limits] table; see tiers/defaults.py for the shape).
    limits: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Audio uploads and `url` audio (GroqCloud: 25 MB free tier, 100 MB dev tier; 100 MB at most here).
    max_audio_bytes: int = Field(default=25 * 1024 * 1024, gt=0, le=100 * 1024 * 1024)
    # Seconds to fetch audio given by an http(s) `url`: one deadline for the whole download.
    audio_url_timeout: float = Field(default=30.0, gt=0)
    # Longest audio decoded (GroqCloud states only size limits). Decoding stops past it, so a small
    # low-bitrate file cannot expand into gigabytes of samples: 2 h is 460 MB of float32 at 16 kHz.
    max_audio_seconds: float = Field(default=2 * 3600.0, gt=0)
    # Seconds Piper may go without writing audio before the speech is abandoned and its slot freed.
    speech_stall_seconds: float = Field(default=60.0, gt=0)
    # Models loaded at start; empty means every registry model (only the upstream ones with --upstream).
    load_models: list[str] = Field(default_factory=list)
    # Gateway mode from the CLI: `ID=BASE_URL[@UPSTREAM_MODEL]` each (engines/upstream_config.py).
    upstreams: list[str] = Field(default_factory=list)
    # The kind of every --upstream (vllm, sglang, openai, groq, ...); guessed from the host when unset.
    upstream_kind: str | None = None
    # --upstream model ids that reason (`reasoning = true` in TOML): reasoning options are accepted.
    upstream_reasoning: list[str] = Field(default_factory=list)
    log_level: str = "info"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'tiergate.db').resolve()}"

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: Any) -> Settings:
        file_values: dict[str, Any] = {}
        if config_file is not None:
            file_values = tomllib.loads(Path(config_file).read_text())
            # Values given to the constructor outrank the environment; the file must not.
            file_values = {k: v for k, v in file_values.items() if f"TIERGATE_{k.upper()}" not in os.environ}
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = cls(**{**file_values, **given})
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return settings
