"""Identifier makers in GroqCloud's formats (prefix + ULID-like or UUID suffix)."""

from __future__ import annotations

import os
import secrets
import time
import uuid

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def ulid() -> str:
    """26-char lowercase Crockford base32 ULID: 48-bit ms timestamp + 80 random bits (sortable by time)."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def request_id() -> str:
    return f"req_{ulid()}"


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4()}"


def response_id() -> str:
    return f"resp_{ulid()}"


def message_id() -> str:
    return f"msg_{ulid()}"


def file_id() -> str:
    return f"file_{ulid()}"


def batch_id() -> str:
    return f"batch_{ulid()}"


def batch_request_id() -> str:
    return f"batch_req_{ulid()}"


def tool_call_id() -> str:
    return f"call_{secrets.token_hex(6)}"


def api_key_secret() -> str:
    """The secret shown once to the user; only its hash is stored."""
    return f"gsk_{secrets.token_urlsafe(36)}"


def short_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"
