"""An upstream's error events and bodies, re-issued in GroqCloud's envelope."""

from __future__ import annotations

from typing import Any

from tiergate.engines.upstream_errors import stream_error


def test_an_error_event_keeps_its_message_type_and_code() -> None:
    failure = stream_error({"message": "overloaded", "type": "server_error", "code": "busy"})
    assert (failure.status, failure.message, failure.type, failure.code) == (
        502,
        "overloaded",
        "server_error",
        "busy",
    )


def test_an_error_event_nested_past_the_json_writers_depth_still_becomes_a_502() -> None:
    deep: Any = "bottom"
    for _ in range(300):  # parses (orjson reads 1024 levels) but could not be dumped again (~254)
        deep = {"inner": deep}
    failure = stream_error({"message": "deep", "detail": deep})
    assert (failure.status, failure.message, failure.code) == (502, "deep", "bad_gateway")
