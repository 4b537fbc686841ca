"""Side requests to an upstream, off the chat path or before admission: is it alive, how loaded is it,
how many tokens is this prompt.

Load comes from the servers that publish it: vLLM's Prometheus `/metrics` (`vllm:num_requests_waiting`)
and llama-server's `/slots` (every slot processing = saturated). Failures here never fail a request:
an unknown load is "not saturated", an unknown count falls back to the estimate.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from tiergate.engines.token_estimate import PER_MESSAGE, rendered_text
from tiergate.engines.upstream_config import UpstreamConfig

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
# JSONEncodeError: a request too deeply nested to send; the caller refuses it itself when forwarding.
_PROBE_ERRORS = (
    aiohttp.ClientError,
    TimeoutError,
    orjson.JSONDecodeError,
    orjson.JSONEncodeError,
    ValueError,
    AttributeError,
)
_VLLM_WAITING = b"vllm:num_requests_waiting"


def auth_headers(config: UpstreamConfig) -> dict[str, str]:
    authorization = config.authorization
    return {"authorization": authorization} if authorization else {}


async def is_alive(session: aiohttp.ClientSession, config: UpstreamConfig) -> bool:
    """The server answers `GET /models` with anything but a 5xx (a 401 still means it is up)."""
    try:
        async with session.get(
            f"{config.base_url}/models", headers=auth_headers(config), timeout=PROBE_TIMEOUT
        ) as response:
            await response.read()
            return response.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


async def waiting_requests(session: aiohttp.ClientSession, config: UpstreamConfig) -> int | None:
    """Requests the upstream has queued (None: unknown). llama-server reports 1 when all slots are busy."""
    try:
        if config.kind == "vllm":
            return parse_vllm_waiting(await _get(session, f"{config.root}/metrics", config))
        if config.kind == "llama-server":
            slots = orjson.loads(await _get(session, f"{config.root}/slots", config))
            if not isinstance(slots, list) or not slots:
                return None
            return int(all(isinstance(s, dict) and s.get("is_processing") for s in slots))
    except _PROBE_ERRORS:
        return None
    return None


async def _get(session: aiohttp.ClientSession, url: str, config: UpstreamConfig) -> bytes:
    async with session.get(url, headers=auth_headers(config), timeout=PROBE_TIMEOUT) as response:
        response.raise_for_status()
        return await response.read()


async def _post(session: aiohttp.ClientSession, url: str, payload: Any, config: UpstreamConfig) -> Any:
    headers = {**auth_headers(config), "content-type": "application/json"}
    async with session.post(
        url, data=orjson.dumps(payload), headers=headers, timeout=PROBE_TIMEOUT
    ) as response:
        response.raise_for_status()
        return orjson.loads(await response.read())


def parse_vllm_waiting(text: bytes) -> int | None:
    """Sum `vllm:num_requests_waiting` over its label sets (one per model/engine)."""
    total: float | None = None
    for line in text.splitlines():
        if line.startswith(_VLLM_WAITING):
            try:
                total = (total or 0.0) + float(line.rsplit(b" ", 1)[1])
            except (IndexError, ValueError):
                continue
    return None if total is None else int(total)


async def tokenized_count(
    session: aiohttp.ClientSession, config: UpstreamConfig, body: dict[str, Any]
) -> int | None:
    """The prompt's token count from the upstream's own tokenizer (None: it could not tell)."""
    messages = body.get("messages") or []
    try:
        if config.kind == "vllm":
            payload: dict[str, Any] = {"model": config.model, "messages": messages}
            if body.get("tools"):
                payload["tools"] = body["tools"]
            count = (await _post(session, f"{config.root}/tokenize", payload, config)).get("count")
            return count if isinstance(count, int) else None
        if config.kind == "llama-server":
            payload = {"content": rendered_text(messages)}
            tokens = (await _post(session, f"{config.root}/tokenize", payload, config)).get("tokens")
            return len(tokens) + PER_MESSAGE * len(messages) if isinstance(tokens, list) else None
    except _PROBE_ERRORS:
        return None
    return None
