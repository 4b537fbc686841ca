"""GroqCloud's rate-limit headers and messages: Go-duration resets, retry-after, wording."""

from __future__ import annotations

import math

import pytest

from tiergate.tiers.headers import (
    RateLimitSnapshot,
    WindowStatus,
    format_amount,
    format_reset,
    rate_limit_headers,
    rate_limited_message,
    request_too_large_message,
    retry_after_header,
)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0, "0s"),
        (-3.0, "0s"),
        (0.001, "0.01s"),
        (0.01, "0.01s"),
        (0.5, "0.5s"),
        (0.05, "0.05s"),
        (1, "1s"),
        (1.1, "1.1s"),
        (7.66, "7.66s"),
        (7.661, "7.67s"),
        (29.5, "29.5s"),
        (59.999, "1m0s"),
        (60, "1m0s"),
        (61.5, "1m1.5s"),
        (179.56, "2m59.56s"),
        (864, "14m24s"),
        (3599.99, "59m59.99s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
        (3723.25, "1h2m3.25s"),
        (86_400, "24h0m0s"),
        (90_061.1, "25h1m1.1s"),
    ],
)
def test_format_reset_writes_go_style_durations_rounded_up_to_centiseconds(
    seconds: float, expected: str
) -> None:
    assert format_reset(seconds) == expected


def test_format_reset_survives_float_noise_in_the_hundredths() -> None:
    # 0.1 + 0.2 and 7.66 are not exact in binary; they must not round up to the next centisecond.
    assert format_reset(0.1 + 0.2) == "0.3s"
    assert format_reset(766 / 100) == "7.66s"


def test_format_reset_rejects_infinite_durations() -> None:
    with pytest.raises(ValueError):
        format_reset(math.inf)


@pytest.mark.parametrize(
    ("seconds", "expected"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (29.5, "30"), (59.99, "60")]
)
def test_retry_after_is_whole_seconds_rounded_up_and_never_zero(seconds: float, expected: str) -> None:
    assert retry_after_header(seconds) == expected


def test_headers_describe_rpd_and_tpm_and_add_retry_after_only_when_given() -> None:
    snapshot = RateLimitSnapshot(
        requests=WindowStatus(limit=14_400, remaining=14_370, reset=179.56),
        tokens=WindowStatus(limit=18_000, remaining=17_997, reset=7.66),
    )
    assert rate_limit_headers(snapshot) == {
        "x-ratelimit-limit-requests": "14400",
        "x-ratelimit-remaining-requests": "14370",
        "x-ratelimit-reset-requests": "2m59.56s",
        "x-ratelimit-limit-tokens": "18000",
        "x-ratelimit-remaining-tokens": "17997",
        "x-ratelimit-reset-tokens": "7.66s",
    }
    assert rate_limit_headers(snapshot, retry_after=1.2)["retry-after"] == "2"


def test_headers_leave_out_a_family_the_model_has_no_limit_for() -> None:
    snapshot = RateLimitSnapshot(requests=WindowStatus(limit=2_000, remaining=1_999, reset=43.2))
    headers = rate_limit_headers(snapshot)
    assert set(headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    assert rate_limit_headers(RateLimitSnapshot()) == {}


def test_rate_limited_message_matches_groqclouds_wording() -> None:
    message = rate_limited_message(
        model="llama-3.1-8b-instant",
        org_id="org_1",
        tier="on_demand",
        unit_label="requests per minute (RPM)",
        limit=2,
        used=2,
        requested=1,
        retry_after=29.5,
    )
    assert message == (
        "Rate limit reached for model `llama-3.1-8b-instant` in organization `org_1` service tier "
        "`on_demand` on requests per minute (RPM): Limit 2, Used 2, Requested 1. Please try again in 29.5s."
    )


def test_rate_limited_message_names_the_project_whose_own_limit_refused() -> None:
    message = rate_limited_message(
        model="m",
        org_id="org_1",
        tier="flex",
        unit_label="tokens per day (TPD)",
        limit=500_000,
        used=499_990,
        requested=20,
        retry_after=1.73,
        project_id="proj_prod",
    )
    assert (
        "in organization `org_1` project `proj_prod` service tier `flex` on tokens per day (TPD)" in message
    )
    assert "Limit 500000, Used 499990, Requested 20. Please try again in 1.73s." in message


def test_request_too_large_message_asks_to_reduce_the_request() -> None:
    message = request_too_large_message(
        model="m",
        org_id="o",
        tier="on_demand",
        unit_label="tokens per minute (TPM)",
        limit=6000,
        requested=9000,
    )
    assert message == (
        "Request too large for model `m` in organization `o` service tier `on_demand` on tokens per minute "
        "(TPM): Limit 6000, Requested 9000, please reduce your message size and try again."
    )


@pytest.mark.parametrize(
    ("amount", "expected"), [(6000, "6000"), (6000.0, "6000"), (12.5, "12.5"), (0.333, "0.33")]
)
def test_amounts_print_whole_numbers_bare_and_fractions_to_two_places(amount: float, expected: str) -> None:
    assert format_amount(amount) == expected
