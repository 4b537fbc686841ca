"""Audio given by `url`: data URLs decoded in slices, size limits, and refused schemes."""

from __future__ import annotations

import base64

import pytest

from tiergate.audio.fetch import FetchError, FetchTooLarge, fetch_url, read_data_url

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
