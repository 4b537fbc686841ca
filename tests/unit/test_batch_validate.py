"""Batch input validation: whole-batch failures vs per-line failures, and the format helpers."""

from __future__ import annotations

import orjson

from tiergate.batches.formats import decode_cursor, encode_cursor, window_seconds
from tiergate.batches.validate import CHAT_URL, validate_lines

MODEL = "known-model"


def line(custom_id: object = "a", **overrides: object) -> bytes:
    item: dict[str, object] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT_URL,
        "body": {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    }
    item.update(overrides)
    return orjson.dumps(item) + b"\n"


def validate(*lines: bytes, endpoint: str = CHAT_URL):
    return validate_lines(list(lines), endpoint, lambda name: name == MODEL)


def test_valid_lines_become_pending_requests_with_their_bodies() -> None:
    result = validate(line("a"), b"\n", line("b"))
    assert not result.fatal and result.errors == []
    assert [(v.line, v.custom_id, v.failed_result) for v in result.lines] == [(1, "a", None), (3, "b", None)]
    assert orjson.loads(result.lines[0].request or "")["model"] == MODEL


def test_duplicate_custom_id_fails_the_whole_batch_naming_both_lines() -> None:
    result = validate(line("a"), line("b"), line("a"))
    assert result.fatal
    assert [(e.code, e.line) for e in result.errors] == [("duplicate_custom_id", 3)]
    assert "line 1" in result.errors[0].message


def test_missing_custom_id_fails_the_whole_batch() -> None:
    result = validate(line(None))
    assert result.fatal and result.errors[0].code == "missing_custom_id"


def test_bad_method_fails_only_its_line_with_groqclouds_message() -> None:
    result = validate(line("a"), line("b", method="GET"))
    assert not result.fatal
    error = result.errors[0]
    assert (error.code, error.param, error.line) == ("invalid_method", "method", 2)
    assert error.message == "Invalid value: 'GET'. Supported values are: 'POST'"
    assert result.failed == 1
    failed = orjson.loads(result.lines[1].failed_result or "")
    assert failed["custom_id"] == "b" and failed["response"] is None
    assert failed["error"]["code"] == "invalid_method" and failed["id"].startswith("batch_req_")


def test_per_line_problems_each_get_a_code_and_param() -> None:
    result = validate(
        line("url", url="/v1/embeddings"),
        line("audio", url="/v1/audio/transcriptions"),
        line("model", body={"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        line("body", body={"model": MODEL, "messages": []}),
        line("stream", body={"model": MODEL, "messages": [{"role": "user", "content": "x"}], "stream": True}),
        line("notdict", body=[1]),
    )
    assert not result.fatal
    got = [(e.code, e.param) for e in result.errors]
    assert got == [
        ("invalid_url", "url"),
        ("invalid_url", "url"),  # an audio line in a chat batch does not match the endpoint
        ("model_not_found", "body.model"),
        ("invalid_request", "body.messages"),
        ("invalid_value", "body.stream"),
        ("invalid_body", "body"),
    ]
    assert result.failed == 6


def test_audio_lines_with_a_url_are_pending_and_without_one_fail_on_body_url() -> None:
    url = "/v1/audio/translations"
    result = validate(
        line("a", url=url, body={"model": MODEL, "url": "https://x/y.mp3", "response_format": "text"}),
        line("b", url=url, body={"model": MODEL}),
        line("c", url=url, body={"model": MODEL, "url": "data:,x", "response_format": "vtt"}),
        endpoint=url,
    )
    assert result.lines[0].failed_result is None
    assert orjson.loads(result.lines[0].request or "")["url"] == "https://x/y.mp3"
    assert [(e.code, e.param, e.line) for e in result.errors] == [
        ("missing_required_parameter", "body.url", 2),
        ("invalid_request", "body.response_format", 3),
    ]


def test_a_file_without_requests_fails_the_batch() -> None:
    assert validate(b"\n").fatal


def test_completion_windows_from_24h_to_7d_are_accepted() -> None:
    assert window_seconds("24h") == 86_400
    assert window_seconds("7d") == 604_800
    assert window_seconds("48h") == 172_800
    for bad in ("23h", "8d", "1w", "24", "", "h"):
        assert window_seconds(bad) is None


def test_cursor_is_groqclouds_base64url_of_the_batch_id() -> None:
    cursor = encode_cursor("batch_01jh6xa7reempvjy")
    assert cursor.startswith("cursor_") and "=" not in cursor
    assert decode_cursor(cursor) == "batch_01jh6xa7reempvjy"
    assert decode_cursor("cursor_!!!") is None
    assert decode_cursor("nope") is None
