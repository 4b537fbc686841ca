"""Audio given by `url`: data URLs decoded in slices, http(s) from a real loopback server, size and
time limits, and refused schemes."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import wave
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tiergate.audio.decode import decode_audio
from tiergate.audio.fetch import FetchError, FetchTimeout, FetchTooLarge, fetch_url, read_data_url

AUDIO = bytes(range(256)) * 3000  # 768 kB: more than one base64 slice


def test_base64_and_base64url_data_urls_give_back_the_exact_bytes() -> None:
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        url = "data:audio/wav;base64," + encode(AUDIO).decode().rstrip("=")
        with read_data_url(url, max_bytes=len(AUDIO)) as out:
            out.seek(0)
            assert out.read() == AUDIO


def test_a_data_url_over_the_limit_is_too_large_before_decoding() -> None:
    url = "data:audio/wav;base64," + base64.b64encode(AUDIO).decode()
    with pytest.raises(FetchTooLarge):
        read_data_url(url, max_bytes=1000)


def test_broken_base64_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="base64"):
        read_data_url("data:audio/wav;base64,@@@@", max_bytes=1000)


async def test_only_http_https_and_data_urls_are_fetched() -> None:
    for url in ("file:///etc/passwd", "ftp://example.test/a.mp3", "/tmp/a.wav"):
        with pytest.raises(FetchError, match="http"):
            await fetch_url(url, max_bytes=1000, timeout=1)


async def test_an_unreachable_address_is_a_fetch_error_not_a_crash() -> None:
    with pytest.raises(FetchError, match="could not be fetched"):
        await fetch_url("http://127.0.0.1:9/audio.wav", max_bytes=1000, timeout=2)


# A real HTTP server on loopback, written on asyncio streams so each route can misbehave exactly:
# answer whole, declare or stream a body over the limit, or trickle a byte at a time.
TRICKLE_BYTES = 400
TRICKLE_GAP = 0.05  # a byte every 50 ms: each read is quick, the whole body takes 20 s


@pytest.fixture
async def audio_host() -> AsyncIterator[str]:
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            path = (await reader.readline()).split()[1].decode()
            while (await reader.readline()) not in (b"\r\n", b""):
                pass
            await ROUTES.get(path, _not_found)(writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def _head(length: int | None) -> bytes:
    sized = f"Content-Length: {length}\r\n" if length is not None else "Connection: close\r\n"
    return f"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n{sized}\r\n".encode()


async def _speech(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(len(WAV)) + WAV)
    await writer.drain()


async def _declared_huge(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(10 * len(WAV)) + WAV)  # says it is too large before sending it all
    await writer.drain()


async def _streamed_huge(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(None))  # no length: read until the server closes
    for _ in range(10):
        writer.write(WAV)
        await writer.drain()


async def _trickle(writer: asyncio.StreamWriter) -> None:
    writer.write(_head(TRICKLE_BYTES))
    for _ in range(TRICKLE_BYTES):
        writer.write(b"\0")
        await writer.drain()
        await asyncio.sleep(TRICKLE_GAP)


async def _not_found(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()


ROUTES = {
    "/speech.wav": _speech,
    "/declared-huge.wav": _declared_huge,
    "/streamed-huge.wav": _streamed_huge,
    "/trickle.wav": _trickle,
}


def _wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.sin(2 * np.pi * 440 * t) * 12_000).astype("<i2").tobytes())
    return buffer.getvalue()


WAV = _wav()


async def test_an_http_url_is_fetched_whole_and_decodes(audio_host: str) -> None:
    with await fetch_url(f"{audio_host}/speech.wav", max_bytes=len(WAV), timeout=5) as out:
        out.seek(0)
        assert out.read() == WAV
        assert decode_audio(out).duration == pytest.approx(1.0)


async def test_an_http_body_over_the_limit_is_too_large_declared_or_not(audio_host: str) -> None:
    for path in ("/declared-huge.wav", "/streamed-huge.wav"):
        with pytest.raises(FetchTooLarge, match=f"limit of {2 * len(WAV)} bytes"):
            await fetch_url(f"{audio_host}{path}", max_bytes=2 * len(WAV), timeout=5)


async def test_an_http_error_status_is_a_fetch_error(audio_host: str) -> None:
    with pytest.raises(FetchError, match="HTTP status 404"):
        await fetch_url(f"{audio_host}/missing.wav", max_bytes=1000, timeout=5)


async def test_a_trickling_server_hits_the_total_deadline_not_a_per_read_one(audio_host: str) -> None:
    # Every read returns within 50 ms, so httpx's per-read timeout alone would wait the full 20 s.
    started = time.monotonic()
    with pytest.raises(FetchTimeout, match=r"within 0\.5 s"):
        await fetch_url(f"{audio_host}/trickle.wav", max_bytes=10_000, timeout=0.5)
    assert time.monotonic() - started < 3
