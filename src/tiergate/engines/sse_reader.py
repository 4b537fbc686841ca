"""Server-sent events from an upstream, as JSON payloads: bytes in, dicts out, nothing buffered beyond a line.

Only `data:` lines matter to OpenAI-compatible streams; `[DONE]` ends them. A stream that closes before
`[DONE]` is reported (`StreamBroken`), so the caller can tell a finished answer from a cut one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson


class StreamBroken(Exception):
    """The upstream's stream ended without `[DONE]`, or sent a payload that is not JSON."""


async def sse_batches(raw: AsyncIterator[bytes]) -> AsyncIterator[list[Any]]:
    """Decoded `data:` payloads, grouped by the network read that completed them (never empty).

    Events that arrived together can leave together (one write instead of several) without waiting
    for anything. Returns at `[DONE]`; raises StreamBroken at a premature end.
    """
    buffer = b""
    async for block in raw:
        # Split once per read: the unfinished last line waits for the next one.
        *lines, buffer = (buffer + block).split(b"\n")
        batch: list[Any] = []
        done = False
        for line in lines:
            line = line.rstrip(b"\r")
            if not line.startswith(b"data:"):
                continue  # comments (": ping"), event names, ids, blank separators
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            if data:
                try:
                    batch.append(orjson.loads(data))
                except orjson.JSONDecodeError:
                    raise StreamBroken("the upstream sent a stream event that is not JSON") from None
        if batch:
            yield batch
        if done:
            return
    raise StreamBroken("the upstream's stream ended before [DONE]")


async def sse_payloads(raw: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """Decoded `data:` payloads one by one (see sse_batches)."""
    async for batch in sse_batches(raw):
        for payload in batch:
            yield payload
