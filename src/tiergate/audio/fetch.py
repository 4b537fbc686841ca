"""Audio given by `url`: an http(s) address fetched with size and time limits, or a data URL.

Both end in a spooled temporary file (memory up to 1 MB, disk beyond), the same thing a multipart
upload gives, so the decoder reads one kind of source. A data URL's base64 is decoded in slices
straight into that file, so the audio is not held twice in memory.
"""

from __future__ import annotations

import base64
import binascii
import tempfile
from typing import IO
from urllib.parse import unquote_to_bytes

import anyio
import httpx

_SPOOL = 1024 * 1024
_SLICE = 4 * 64 * 1024  # base64 slices must be a multiple of 4 characters


class FetchError(Exception):
    """The url could not give audio; the message is safe to show the client."""


class FetchTooLarge(FetchError):
    """The audio behind the url is over the size limit (413)."""


class FetchTimeout(FetchError):
    """The download did not finish within its deadline."""


def spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=_SPOOL)


def read_data_url(url: str, max_bytes: int) -> IO[bytes]:
    """`data:[<media type>][;base64],<data>`; base64url's alphabet is accepted as well."""
    header, sep, payload = url.partition(",")
    if not sep:
        raise FetchError("The data URL has no `,` before its data.")
    if not header.endswith(";base64"):
        data = unquote_to_bytes(payload)
        if len(data) > max_bytes:
            raise FetchTooLarge(f"The audio is larger than the limit of {max_bytes} bytes.")
        out = spool()
        out.write(data)
        return out
    payload = "".join(payload.split()).replace("-", "+").replace("_", "/")
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise FetchTooLarge(f"The audio is larger than the limit of {max_bytes} bytes.")
    payload += "=" * (-len(payload) % 4)
    out = spool()
    try:
        for start in range(0, len(payload), _SLICE):
            out.write(base64.b64decode(payload[start : start + _SLICE], validate=True))
    except (binascii.Error, ValueError) as exc:
        out.close()
        raise FetchError("The data URL's base64 data is invalid.") from exc
    return out


async def fetch_url(url: str, max_bytes: int, timeout: float) -> IO[bytes]:
    """The audio at `url` (data, http or https), at most `max_bytes`, within `timeout` seconds.

    `timeout` is one deadline for the whole download: httpx's own timeout is per network operation,
    so a server trickling a byte a second would otherwise hold the request for as long as it likes.
    """
    if url.startswith("data:"):
        return read_data_url(url, max_bytes)
    if not url.startswith(("http://", "https://")):
        raise FetchError("The url must be an http(s) address or a data URL.")
    out = spool()
    try:
        with anyio.fail_after(timeout):
            await _download(url, max_bytes, timeout, out)
    except TimeoutError:
        out.close()
        raise FetchTimeout(f"The url did not deliver the audio within {timeout:g} s.") from None
    except FetchError:
        out.close()
        raise
    except httpx.HTTPError as exc:
        out.close()
        raise FetchError(f"The url could not be fetched ({type(exc).__name__}).") from exc
    return out


async def _download(url: str, max_bytes: int, timeout: float, out: IO[bytes]) -> None:
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True, max_redirects=3) as client,
        client.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise FetchError(f"Fetching the url failed with HTTP status {response.status_code}.")
        # A declared length says "too large" before any byte is read (unless compressed: then
        # it counts the compressed bytes, and only the decoded ones are limited).
        declared = response.headers.get("content-length", "")
        encoded = response.headers.get("content-encoding", "identity") != "identity"
        if declared.isdigit() and int(declared) > max_bytes and not encoded:
            raise FetchTooLarge(f"The audio is larger than the limit of {max_bytes} bytes.")
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > max_bytes:
                raise FetchTooLarge(f"The audio is larger than the limit of {max_bytes} bytes.")
            out.write(chunk)
