"""Upstream settings for a model with `engine = "upstream"`, from TOML `options` or `--upstream` flags.

    [[models]]
    id = "llama-3.1-8b-instant"
    engine = "upstream"
    [models.options]
    max_attempts = 3                       # upstreams tried per request (failover)
    [[models.options.upstreams]]
    base_url = "http://gpu-1:8000/v1"
    kind = "vllm"                          # vllm sglang openai groq tiergate llama-server ollama generic
    model = "meta-llama/Llama-3.1-8B-Instruct"
    api_key_env = "GPU_API_KEY"            # name of the env var holding the key (never the key itself)
    max_concurrency = 64                   # requests in flight: the slots our scheduler hands out
    weight = 1                             # share of traffic among upstreams of the same priority
    priority = 0                           # lower first; higher ones are failover targets

API keys are read from the environment only, and kept out of every repr and log line. Credentials in a
base_url (`http://user:pass@host/v1`) become HTTP basic auth and are taken out of the URL, so they never
reach a log line or metric label either; an upstream carries one Authorization header, so such a URL
together with an explicit `api_key_env` is refused here rather than failing on every request.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from tiergate.engines.tier_mapping import KINDS

DEFAULT_KEY_ENV = "TIERGATE_UPSTREAM_API_KEY"
DEFAULT_CONCURRENCY = 64
# Kinds whose servers offer a tokenizer endpoint; others are estimated (see estimate_tokens).
_TOKENIZING_KINDS = ("vllm", "llama-server")
# Kinds whose servers report their load (vLLM /metrics, llama-server /slots).
_LOAD_KINDS = ("vllm", "llama-server")
COUNT_MODES = ("tokenize", "tokenizer", "estimate")
# What an env var name looks like: the `#KEY_ENV` suffix of an --upstream flag must be one.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A header value with a control character makes aiohttp refuse the request: refuse the key at start.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UpstreamConfigError(Exception):
    """The upstream configuration is unusable; the message names the field."""


@dataclass(frozen=True)
class UpstreamConfig:
    """One OpenAI-compatible server behind a model."""

    name: str
    base_url: str
    model: str
    kind: str = "generic"
    api_key: str | None = field(default=None, repr=False)
    # "user:password" from the base_url's userinfo, sent as HTTP basic auth (never with api_key).
    basic_auth: str | None = field(default=None, repr=False)
    max_concurrency: int = DEFAULT_CONCURRENCY
    weight: float = 1.0
    priority: int = 0
    connect_timeout: float = 3.0
    # Longest silence while waiting for the upstream (first byte, or between two stream chunks).
    read_timeout: float = 300.0
    # "tokenize": ask the upstream's /tokenize before admission (then the model's tokenizer, then the
    # estimate); "tokenizer": the model's own tokenizer (options.tokenizer); "estimate": chars / 4.
    count_tokens: str = "estimate"
    # Flex is refused while the upstream reports more than this many requests waiting (load-aware kinds).
    flex_max_waiting: int = 0

    @property
    def root(self) -> str:
        """The server root: tokenizer and metrics endpoints live beside /v1, not under it."""
        return self.base_url.removesuffix("/v1")

    @property
    def reports_load(self) -> bool:
        return self.kind in _LOAD_KINDS

    @property
    def authorization(self) -> str | None:
        """The Authorization header value: the API key as a bearer token, or the URL's basic auth."""
        if self.api_key:
            return f"Bearer {self.api_key}"
        if self.basic_auth is not None:
            return "Basic " + base64.b64encode(self.basic_auth.encode()).decode("ascii")
        return None


@dataclass(frozen=True)
class PoolConfig:
    """How a model spreads requests over its upstreams and reacts to failures."""

    upstreams: tuple[UpstreamConfig, ...]
    max_attempts: int = 3
    backoff_seconds: float = 0.05
    failure_threshold: int = 3
    cooldown_seconds: float = 5.0
    health_interval: float = 5.0
    load_interval: float = 1.0
    # A GGUF file whose vocabulary and chat template count prompts exactly (engines/upstream_tokenizer.py).
    tokenizer: str | None = None


_POOL_KEYS = {
    "max_attempts": int,
    "backoff_seconds": float,
    "failure_threshold": int,
    "cooldown_seconds": float,
    "health_interval": float,
    "load_interval": float,
    "tokenizer": str,
}
_UPSTREAM_KEYS = {
    "name": str,
    "base_url": str,
    "model": str,
    "kind": str,
    "api_key_env": str,
    "max_concurrency": int,
    "weight": float,
    "priority": int,
    "connect_timeout": float,
    "read_timeout": float,
    "count_tokens": str,
    "flex_max_waiting": int,
}


def pool_config(model_id: str, options: dict[str, Any], env: dict[str, str] | None = None) -> PoolConfig:
    """Validate a model's `options` table; every mistake is an UpstreamConfigError naming the field."""
    env = dict(os.environ) if env is None else env
    unknown = set(options) - set(_POOL_KEYS) - {"upstreams"}
    if unknown:
        raise UpstreamConfigError(f"model {model_id}: unknown option(s) {', '.join(sorted(unknown))}")
    tables = options.get("upstreams")
    if not isinstance(tables, list) or not tables:
        raise UpstreamConfigError(f"model {model_id}: engine 'upstream' needs options.upstreams (a list)")
    tokenizer = options.get("tokenizer")
    if tokenizer is not None and not (isinstance(tokenizer, str) and _is_gguf(Path(tokenizer))):
        raise UpstreamConfigError(f"model {model_id}: options.tokenizer must be the path of a GGUF file")
    upstreams = tuple(
        _upstream(model_id, i, table, env, has_tokenizer=tokenizer is not None)
        for i, table in enumerate(tables)
    )
    names = [u.name for u in upstreams]
    if len(set(names)) != len(names):
        raise UpstreamConfigError(f"model {model_id}: upstream names must be unique")
    pool = {
        key: _typed(model_id, key, options[key], kind) for key, kind in _POOL_KEYS.items() if key in options
    }
    config = PoolConfig(upstreams=upstreams, **pool)
    if config.max_attempts < 1:
        raise UpstreamConfigError(f"model {model_id}: max_attempts must be at least 1")
    return config


def _upstream(
    model_id: str, index: int, table: Any, env: dict[str, str], *, has_tokenizer: bool
) -> UpstreamConfig:
    where = f"model {model_id}: upstreams[{index}]"
    if not isinstance(table, dict):
        raise UpstreamConfigError(f"{where} must be a table")
    unknown = set(table) - set(_UPSTREAM_KEYS)
    if unknown:
        raise UpstreamConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    fields = {key: _typed(model_id, key, value, _UPSTREAM_KEYS[key]) for key, value in table.items()}
    base_url = str(fields.pop("base_url", "")).rstrip("/")
    try:
        parts = urlsplit(base_url)
        port = parts.port  # raises for a port that is not a number
    except ValueError:
        raise UpstreamConfigError(f"{where}.base_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamConfigError(f"{where}.base_url must be an http(s) URL")
    kind = fields.pop("kind", None) or guess_kind(base_url)
    if kind not in KINDS:
        raise UpstreamConfigError(f"{where}.kind must be one of {', '.join(KINDS)}; got {kind!r}")
    # Never the netloc: a user:password@ in the URL would end up in logs and metric labels.
    name = fields.pop("name", None) or f"{parts.hostname}{f':{port}' if port else ''}"
    basic_auth = None
    if parts.username is not None or parts.password is not None:
        basic_auth = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        host = parts.netloc.rpartition("@")[2]
        base_url = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    key_env = fields.pop("api_key_env", None)
    if key_env and basic_auth is not None:
        raise UpstreamConfigError(
            f"{where}: base_url carries credentials (user:password@) and api_key_env names a key; "
            "an upstream gets one Authorization header, so keep only one of them"
        )
    api_key = env.get(key_env) if key_env else None
    if api_key is None and basic_auth is None:
        # The URL's own credentials are the more specific setting: the shared env vars never override them.
        api_key = env.get(_per_upstream_env(model_id)) or env.get(DEFAULT_KEY_ENV)
    api_key = (api_key or "").strip() or None
    if api_key is not None and _CONTROL.search(api_key):
        raise UpstreamConfigError(f"{where}: the API key contains a control character (a newline?)")
    if basic_auth is not None and _CONTROL.search(basic_auth):
        raise UpstreamConfigError(f"{where}: the base_url's credentials contain a control character")
    default_count = "tokenize" if kind in _TOKENIZING_KINDS else "tokenizer" if has_tokenizer else "estimate"
    count = fields.pop("count_tokens", None) or default_count
    if count not in COUNT_MODES:
        raise UpstreamConfigError(f"{where}: count_tokens must be one of {', '.join(COUNT_MODES)}")
    if count == "tokenizer" and not has_tokenizer:
        raise UpstreamConfigError(f"{where}: count_tokens 'tokenizer' needs options.tokenizer (a GGUF path)")
    config = UpstreamConfig(
        name=name,
        base_url=base_url,
        model=fields.pop("model", None) or model_id,
        kind=kind,
        api_key=api_key,
        basic_auth=basic_auth,
        count_tokens=count,
        **fields,
    )
    if config.max_concurrency < 1 or config.weight <= 0:
        raise UpstreamConfigError(f"model {model_id}: max_concurrency and weight must be positive")
    return config


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(4) == b"GGUF"
    except OSError:
        return False


def _typed(model_id: str, key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UpstreamConfigError(f"model {model_id}: `{key}` must be a {kind.__name__}")
    return value


def _per_upstream_env(model_id: str) -> str:
    """TIERGATE_UPSTREAM_API_KEY_<ID>: the key for one model's upstreams, e.g. ..._LLAMA_70B."""
    return f"{DEFAULT_KEY_ENV}_{re.sub(r'[^A-Za-z0-9]', '_', model_id).upper()}"


def guess_kind(base_url: str) -> str:
    """The hosted APIs are recognised by host; anything else is generic unless configured."""
    host = urlsplit(base_url).hostname or ""
    if host.endswith("groq.com"):
        return "groq"
    if host.endswith("openai.com"):
        return "openai"
    return "generic"


def cli_model_tables(
    values: list[str], kind: str | None, concurrency: int | None, reasoning: Collection[str] = ()
) -> list[dict[str, Any]]:
    """`--upstream ID=BASE_URL[@UPSTREAM_MODEL][#KEY_ENV]` flags -> [[models]] tables (a repeated ID adds
    upstreams). `#KEY_ENV` names the env var holding that upstream's key, as `api_key_env` does in TOML,
    so two upstreams of one model can have different keys; a base URL never needs a `#` fragment.
    `reasoning` holds the ids given `--upstream-reasoning`: those tables get `reasoning = true`."""
    tables: dict[str, dict[str, Any]] = {}
    for value in values:
        model_id, sep, rest = value.partition("=")
        model_id = model_id.strip()
        if not sep or not model_id or not rest:
            raise UpstreamConfigError(
                f"--upstream {value!r}: expected ID=BASE_URL[@UPSTREAM_MODEL][#KEY_ENV]"
            )
        key_env = None
        if "#" in rest:
            rest, _, key_env = rest.rpartition("#")
            if not _ENV_NAME.fullmatch(key_env):
                raise UpstreamConfigError(
                    f"--upstream {model_id}=...#{key_env}: what follows '#' must be an env var name"
                )
        base_url, upstream_model = _split_model(rest)
        table = tables.setdefault(
            model_id,
            {"id": model_id, "engine": "upstream", "owned_by": "upstream", "options": {"upstreams": []}},
        )
        upstreams = table["options"]["upstreams"]
        upstream: dict[str, Any] = {"base_url": base_url, "name": f"{model_id}#{len(upstreams)}"}
        if upstream_model:
            upstream["model"] = upstream_model
        if key_env:
            upstream["api_key_env"] = key_env
        if kind:
            upstream["kind"] = kind
        if concurrency:
            upstream["max_concurrency"] = concurrency
        upstreams.append(upstream)
    for model_id in reasoning:
        if model_id not in tables:
            raise UpstreamConfigError(
                f"--upstream-reasoning {model_id}: there is no --upstream {model_id}=..."
            )
        tables[model_id]["reasoning"] = True
    return list(tables.values())


def _split_model(rest: str) -> tuple[str, str]:
    """BASE_URL@MODEL: the '@' is looked for in the path only, so user@host URLs stay whole."""
    scheme, sep, after = rest.partition("://")
    if not sep:
        raise UpstreamConfigError(f"--upstream: {rest!r} is not an http(s) URL")
    host, slash, path = after.partition("/")
    path, _, model = path.partition("@")
    return f"{scheme}://{host}{slash}{path}".rstrip("/"), model.strip()
