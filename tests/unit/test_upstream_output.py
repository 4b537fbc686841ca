"""Re-shaping an upstream's answer: text and reasoning pass through, tool calls are assembled whole."""

from __future__ import annotations

from typing import Any

import pytest

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
