"""The tool-call parser over split text, and the tool grammar compiling in llama.cpp."""

from __future__ import annotations

import json

import llama_cpp
import pytest

from tiergate.generation.tool_calls import ToolCallParser, ToolSpec, parse_call, tool_call_grammar

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def feed_all(parser: ToolCallParser, pieces: list[str]) -> tuple[str, list]:
    content, calls = [], []
    for piece in pieces:
        out = parser.feed(piece)
        content.append(out.content)
        calls.extend(out.calls)
    tail = parser.flush()
    return "".join(content) + tail.content, calls + list(tail.calls)


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_calls_are_lifted_out_of_text_however_it_is_split(size: int) -> None:
    text = "Let me check." + CALL + "\n" + CALL.replace("Paris", "Rome")
    content, calls = feed_all(ToolCallParser(), [text[i : i + size] for i in range(0, len(text), size)])
    assert content.strip() == "Let me check."
    assert [c.index for c in calls] == [0, 1]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert all(c.id.startswith("call_") and c.name == "get_weather" for c in calls)


def test_text_that_only_looks_like_a_tag_start_is_released() -> None:
    content, calls = feed_all(ToolCallParser(), ["a <b> and <tool", "kit>"])
    assert content == "a <b> and <toolkit>" and calls == []


def test_an_unclosed_call_is_parsed_at_the_end_if_complete() -> None:
    _, calls = feed_all(ToolCallParser(), ['<tool_call>\n{"name": "f", "arguments": {}}'])
    assert [c.name for c in calls] == ["f"]


def test_a_broken_call_is_recorded_as_failed() -> None:
    parser = ToolCallParser()
    feed_all(parser, ['<tool_call>{"name": </tool_call>'])
    assert parser.failed is not None


def test_string_arguments_are_normalised_to_json_text() -> None:
    assert parse_call('{"name": "f", "arguments": "{\\"a\\": 1}"}') == ("f", '{"a": 1}')


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_tool_grammar_compiles(mode: str) -> None:
    tools = [
        ToolSpec(
            "get_weather",
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        ),
        ToolSpec("noop"),
    ]
    grammar = tool_call_grammar(tools, mode=mode, parallel=True)
    assert llama_cpp.LlamaGrammar.from_string(grammar, verbose=False) is not None
    assert "<tool_call>" in grammar
