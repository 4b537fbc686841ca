"""Reading an upstream's event stream: payloads across block boundaries, [DONE], and cut streams."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tiergate.engines.sse_reader import StreamBroken, sse_batches, sse_payloads


async def _blocks(*blocks: bytes) -> AsyncIterator[bytes]:
    for block in blocks:
        yield block


async def _read(*blocks: bytes) -> list[object]:
    return [payload async for payload in sse_payloads(_blocks(*blocks))]


async def test_payloads_split_across_blocks_are_joined() -> None:
    got = await _read(b'data: {"a"', b': 1}\n\ndata: {"b": 2}\r\n', b"\r\ndata: [DONE]\n\n")
    assert got == [{"a": 1}, {"b": 2}]


async def test_comments_and_other_fields_are_skipped() -> None:
    got = await _read(b': ping\n\nevent: message\nid: 3\ndata: {"x": 1}\n\ndata: [DONE]\n\n')
    assert got == [{"x": 1}]


async def test_nothing_after_done_is_read() -> None:
    assert await _read(b'data: [DONE]\n\ndata: {"late": 1}\n\n') == []


async def test_a_stream_that_ends_before_done_is_broken() -> None:
    with pytest.raises(StreamBroken):
        await _read(b'data: {"a": 1}\n\n')


async def test_a_payload_that_is_not_json_is_broken() -> None:
    with pytest.raises(StreamBroken):
        await _read(b"data: <html>\n\n")


async def test_events_that_arrive_in_one_read_come_out_as_one_batch() -> None:
    blocks = _blocks(b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: {"c"', b": 3}\n\ndata: [DONE]\n\n")
    assert [batch async for batch in sse_batches(blocks)] == [[{"a": 1}, {"b": 2}], [{"c": 3}]]
