"""GroqCloud's rate-limit headers and messages, built from plain numbers.

GroqCloud sends six `x-ratelimit-*` headers on every response, success or error, and
`retry-after` only on a 429. The `-requests` trio always describes requests per day (RPD)
and the `-tokens` trio tokens per minute (TPM), whatever window actually refused the request
(seed 003, "Rate Limit Headers"). Resets are Go-duration-style strings such as `2m59.56s`.

This module knows nothing about windows or stores; `limits.py` fills a `RateLimitSnapshot`
and these functions turn it into strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Float noise guard: 7.66 * 100 is 765.9999999999999, which must still print as 7.66s.
_EPSILON = 1e-6


@dataclass(frozen=True)
class WindowStatus:
    """What a client may still spend in one header family (RPD or TPM) right now.

    `reset` is the number of seconds until the window has fully refilled (used drops to 0),
    which is how GroqCloud's example reads: 30 of 14,400 RPD used -> `2m59.56s`, since a
    day-long bucket of 14,400 frees one request every 6 s.
    """

    limit: int
    remaining: int
    reset: float


@dataclass(frozen=True)
class RateLimitSnapshot:
    """The two header families for one request's scope; None where no such limit applies."""

    requests: WindowStatus | None = None
    tokens: WindowStatus | None = None


def format_reset(seconds: float) -> str:
    """Format a duration like Go's `time.Duration.String`, as GroqCloud's headers do.

    Differences from Go, on purpose: precision is 10 ms (GroqCloud shows `7.66s`), durations
    under a second stay in seconds (`0.5s`, not `500ms`), and rounding is upward so a client
    that waits the printed time never arrives early.
    """
    if not math.isfinite(seconds):
        raise ValueError("reset must be finite")
    centis = max(0, math.ceil(seconds * 100 - _EPSILON))
    if centis == 0:
        return "0s"
    hours, centis = divmod(centis, 360_000)
    minutes, centis = divmod(centis, 6_000)
    whole, frac = divmod(centis, 100)
    secs = f"{whole}.{frac:02d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def retry_after_header(seconds: float) -> str:
    """`retry-after` is whole seconds; round up (at least 1) so a retry is never early."""
    return str(max(1, math.ceil(seconds - _EPSILON)))


def rate_limit_headers(snapshot: RateLimitSnapshot, retry_after: float | None = None) -> dict[str, str]:
    """The `x-ratelimit-*` headers (and `retry-after` when given) for one response.

    A family whose unit has no limit for this model (e.g. TPM for whisper, which is limited
    by audio seconds) is left out rather than reported as a made-up number.
    """
    headers: dict[str, str] = {}
    for family, status in (("requests", snapshot.requests), ("tokens", snapshot.tokens)):
        if status is None:
            continue
        headers[f"x-ratelimit-limit-{family}"] = str(status.limit)
        headers[f"x-ratelimit-remaining-{family}"] = str(status.remaining)
        headers[f"x-ratelimit-reset-{family}"] = format_reset(status.reset)
    if retry_after is not None:
        headers["retry-after"] = retry_after_header(retry_after)
    return headers


def _where(model: str, org_id: str, project_id: str | None, tier: str) -> str:
    project = f" project `{project_id}`" if project_id is not None else ""
    return f"for model `{model}` in organization `{org_id}`{project} service tier `{tier}`"


def format_amount(amount: float) -> str:
    """Whole numbers print bare (`6000`); audio seconds may keep up to two decimals."""
    rounded = round(amount, 2)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.2f}".rstrip("0")


def rate_limited_message(
    *,
    model: str,
    org_id: str,
    tier: str,
    unit_label: str,
    limit: float,
    used: float,
    requested: float,
    retry_after: float,
    project_id: str | None = None,
) -> str:
    """GroqCloud's 429 text, e.g. "Rate limit reached for model `m` in organization `o` service
    tier `on_demand` on requests per minute (RPM): Limit 2, Used 2, Requested 1. Please try
    again in 29.5s." The project is named only when its own custom limit refused the request.
    """
    return (
        f"Rate limit reached {_where(model, org_id, project_id, tier)} on {unit_label}: "
        f"Limit {format_amount(limit)}, Used {format_amount(used)}, "
        f"Requested {format_amount(requested)}. Please try again in {format_reset(retry_after)}."
    )


def request_too_large_message(
    *,
    model: str,
    org_id: str,
    tier: str,
    unit_label: str,
    limit: float,
    requested: float,
    project_id: str | None = None,
) -> str:
    """GroqCloud's 413 text for a request that no amount of waiting would admit."""
    return (
        f"Request too large {_where(model, org_id, project_id, tier)} on {unit_label}: "
        f"Limit {format_amount(limit)}, Requested {format_amount(requested)}, "
        "please reduce your message size and try again."
    )
