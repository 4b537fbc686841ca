"""Re-shaping an upstream's answer: text and reasoning pass through, tool calls are assembled whole,
malformed shapes are GarbledAnswer (never a crash), and the answer is held to the request's promises."""

from __future__ import annotations

from typing import Any

import pytest

from tiergate.errors import InvalidRequest
from tiergate.generation.output import OutputPlan
from tiergate.generation.tool_calls import ToolSpec
from tiergate.generation.upstream_output import GarbledAnswer, UpstreamOutput


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_stream_text_and_reasoning_pass_through_as_they_arrive() -> None:
    out = UpstreamOutput()
    assert out.read_chunk(_chunk({"role": "assistant", "content": ""})).content == ""
    assert out.read_chunk(_chunk({"reasoning_content": "think"})).reasoning == "think"
    assert out.read_chunk(_chunk({"reasoning": " more"})).reasoning == " more"
    assert out.read_chunk(_chunk({"content": "Hi"})).content == "Hi"
    out.read_chunk(_chunk({}, "stop"))
    assert out.message_content() == "Hi" and out.message_reasoning() == "think more"
    assert out.finish_reason == "stop" and out.chunks_with_output == 3


def test_tool_call_fragments_come_out_whole_at_the_end() -> None:
    out = UpstreamOutput()
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get", "arguments": ""}}
    assert not out.read_chunk(_chunk({"tool_calls": [first]}))
    out.read_chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}))
    out.read_chunk(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Oslo"}'}}]}))
    out.read_chunk(_chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "put"}}]}))
    out.read_chunk(_chunk({}, "tool_calls"))
    calls = out.flush().tool_calls
    assert [(c.index, c.id, c.name, c.arguments) for c in calls] == [
        (0, "call_1", "get", '{"city": "Oslo"}'),
        (1, "call_2", "put", "{}"),
    ]
    assert out.message_content() is None  # only calls, no text


def test_a_body_with_object_arguments_gets_json_text_arguments() -> None:
    out = UpstreamOutput()
    body = {
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 7,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    piece = out.read_body(body)
    assert piece.tool_calls[0].arguments == '{"a":1}' and piece.tool_calls[0].id.startswith("call_")
    assert (out.prompt_tokens, out.completion_tokens, out.reasoning_tokens) == (5, 7, 2)


def test_usage_is_read_from_groqclouds_x_groq_too() -> None:
    out = UpstreamOutput()
    out.read_chunk(_chunk({}, "stop", x_groq={"usage": {"prompt_tokens": 3, "completion_tokens": 4}}))
    assert (out.prompt_tokens, out.completion_tokens) == (3, 4)


def test_unknown_finish_reasons_become_stop() -> None:
    out = UpstreamOutput()
    out.read_chunk(_chunk({}, "eos_token"))
    assert out.finish_reason == "stop"


@pytest.mark.parametrize("chunk", [{"object": "x"}, {"choices": ["nope"]}, {"choices": [{"delta": "text"}]}])
def test_chunks_that_are_not_chat_chunks_are_garbled(chunk: dict[str, Any]) -> None:
    with pytest.raises(GarbledAnswer):
        UpstreamOutput().read_chunk(chunk)


def test_a_usage_only_chunk_is_not_garbled() -> None:
    assert not UpstreamOutput().read_chunk({"choices": [], "usage": {"prompt_tokens": 1}})


def _body(message: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


def _calls(*calls: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": list(calls)}


@pytest.mark.parametrize(
    "message",
    [
        _calls({"id": "c", "function": "get_weather"}),  # a function that is not an object
        _calls({"id": "c", "function": ["get_weather"]}),
        _calls({"function": {"name": 7, "arguments": "{}"}}),
        _calls({"function": {"name": "f", "arguments": 12}}),
        _calls({"function": {"name": "f", "arguments": ["a"]}}),
        _calls("call"),
        {"role": "assistant", "content": None, "tool_calls": {"0": {}}},
        {"role": "assistant", "content": 42},
        {"role": "assistant", "content": None, "function_call": "f"},
    ],
)
def test_malformed_bodies_are_garbled_never_a_crash(message: dict[str, Any]) -> None:
    with pytest.raises(GarbledAnswer):
        UpstreamOutput().read_body(_body(message))


def test_object_arguments_too_deep_to_encode_are_garbled() -> None:
    deep: dict[str, Any] = {}
    for _ in range(300):
        deep = {"a": deep}
    with pytest.raises(GarbledAnswer):
        UpstreamOutput().read_body(_body(_calls({"function": {"name": "f", "arguments": deep}})))


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": {}},
        {"choices": 0},
        {"choices": "abc"},
        _chunk([]),  # a delta that is a list
        _chunk({"tool_calls": [{"index": 0, "function": "f"}]}),
        _chunk({"tool_calls": "f"}),
        _chunk({"content": {"text": "x"}}),
        _chunk({"function_call": ["f"]}),
    ],
)
def test_malformed_chunks_are_garbled_never_a_crash(chunk: dict[str, Any]) -> None:
    with pytest.raises(GarbledAnswer):
        UpstreamOutput().read_chunk(chunk)


def test_a_fragment_with_only_an_id_and_content_parts_are_read() -> None:
    out = UpstreamOutput()
    out.read_chunk(_chunk({"tool_calls": [{"index": 0, "id": "call_9", "type": "function"}]}))
    out.read_chunk(_chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": None}}]}))
    assert [(c.id, c.name, c.arguments) for c in out.flush().tool_calls] == [("call_9", "f", "{}")]
    parts = UpstreamOutput().read_body(_body({"content": [{"type": "text", "text": "a"}, {"text": "b"}]}))
    assert parts.content == "ab"


@pytest.mark.parametrize("count", [-5, True, 2**40, "12", 1.5])
def test_implausible_token_counts_are_ignored(count: Any) -> None:
    out = UpstreamOutput()
    out.read_chunk({"choices": [], "usage": {"prompt_tokens": count, "completion_tokens": count}})
    assert out.prompt_tokens is None and out.completion_tokens is None


def test_hidden_reasoning_is_not_shown_and_raw_reasoning_is_in_think_tags() -> None:
    hidden = UpstreamOutput(OutputPlan(reasoning="hidden"))
    assert not hidden.read_chunk(_chunk({"reasoning_content": "hmm"}))
    assert hidden.read_chunk(_chunk({"content": "Hi"})).content == "Hi"
    assert hidden.message_reasoning() is None and hidden.message_content() == "Hi"

    raw = UpstreamOutput(OutputPlan(reasoning="raw"))
    pieces = [
        raw.read_chunk(_chunk({"reasoning_content": "hm"})),
        raw.read_chunk(_chunk({"reasoning_content": "m"})),
        raw.read_chunk(_chunk({"content": "Hi"})),
    ]
    assert [p.content for p in pieces] == ["<think>hm", "m", "</think>Hi"]
    assert all(not p.reasoning for p in pieces)
    assert raw.message_content() == "<think>hmm</think>Hi" and raw.message_reasoning() is None
    body = UpstreamOutput(OutputPlan(reasoning="raw"))
    assert body.read_body(_body({"content": "x", "reasoning": "r"})).content == "<think>r</think>x"


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
WEATHER = ToolSpec("get_weather", {"type": "object", "properties": {"city": {"type": "string"}}})


@pytest.mark.parametrize(
    ("plan", "content", "message"),
    [
        (OutputPlan(json="object"), "Sure! {", "Failed to generate JSON"),
        (OutputPlan(json="object"), "[1, 2]", "must be a JSON object"),
        (OutputPlan(json="schema", schema=SCHEMA), '{"name": 5}', "does not match the expected schema"),
        (OutputPlan(json="object"), "[" * 5000 + "]" * 5000, ""),
    ],
)
def test_json_that_breaks_the_requested_format_is_json_validate_failed(
    plan: OutputPlan, content: str, message: str
) -> None:
    out = UpstreamOutput(plan)
    out.read_body(_body({"content": content}))
    with pytest.raises(InvalidRequest) as failed:
        out.check()
    assert failed.value.code == "json_validate_failed" and message in failed.value.message
    assert failed.value.extra == {"failed_generation": content}


def test_valid_json_and_valid_tool_calls_pass_the_check() -> None:
    out = UpstreamOutput(OutputPlan(json="schema", schema=SCHEMA))
    out.read_body(_body({"content": '{"name": "Ada"}'}))
    out.check()
    calls = UpstreamOutput(OutputPlan(tools=(WEATHER,)))
    calls.read_body(_body(_calls({"function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}})))
    calls.check()


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ({"name": "get_weather", "arguments": '{"city": '}, "Failed to parse tool call arguments as JSON"),
        (
            {"name": "get_weather", "arguments": "[" * 5000 + "]" * 5000},
            "Failed to parse tool call arguments",
        ),
        ({"name": "launch", "arguments": "{}"}, "attempted to call tool 'launch'"),
        ({"name": "get_weather", "arguments": '{"city": 5}'}, "did not match schema"),
    ],
)
def test_tool_calls_that_break_the_tools_offered_are_tool_use_failed(
    function: dict[str, Any], message: str
) -> None:
    out = UpstreamOutput(OutputPlan(tools=(WEATHER,)))
    out.read_body(_body(_calls({"function": function})))
    with pytest.raises(InvalidRequest) as failed:
        out.check()
    assert failed.value.code == "tool_use_failed" and message in failed.value.message
    assert function["name"] in failed.value.extra["failed_generation"]
