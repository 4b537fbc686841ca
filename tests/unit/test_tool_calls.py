"""The tool-call parser over split text, and the tool grammar as llama.cpp applies it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.grammar_check import Vocabulary, vocabulary
from tiergate.generation.tool_calls import ToolCallParser, ToolSpec, parse_call, tool_call_grammar

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TWO_CALLS = CALL + "\n" + CALL.replace("Paris", "Rome")  # the grammar's separator between calls
TOOLS = [
    ToolSpec(
        "get_weather",
        {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    ),
    ToolSpec("noop"),
]


@pytest.fixture(scope="module")
def vocab(models_dir: Path) -> Vocabulary:
    return vocabulary(models_dir)


def feed_all(parser: ToolCallParser, pieces: list[str]) -> tuple[list[str], list]:
    content, calls = [], []
    for piece in pieces:
        out = parser.feed(piece)
        content.append(out.content)
        calls.extend(out.calls)
    tail = parser.flush()
    return [*content, tail.content], calls + list(tail.calls)


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
def test_parallel_calls_are_lifted_whole_and_the_newline_between_them_is_not_content(size: int) -> None:
    content, calls = feed_all(ToolCallParser(), split(" " + TWO_CALLS + "\n", size))
    assert [piece for piece in content if piece] == []
    assert [c.index for c in calls] == [0, 1]
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert all(c.id.startswith("call_") and c.name == "get_weather" for c in calls)


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_an_answer_that_starts_as_text_stays_text_even_if_a_tag_follows(size: int) -> None:
    # JSON mode with tools: a string may hold the tag; the grammar's text branch never does.
    text = '{"note": "' + CALL.replace("\n", " ").replace('"', "'") + '"}'
    content, calls = feed_all(ToolCallParser(), split(text, size))
    assert "".join(content) == text and calls == []


def test_text_that_only_looks_like_a_tag_start_is_released() -> None:
    content, calls = feed_all(ToolCallParser(), ["a <b> and <tool", "kit>"])
    assert "".join(content) == "a <b> and <toolkit>" and calls == []


def test_a_whitespace_only_answer_without_calls_is_kept() -> None:
    content, calls = feed_all(ToolCallParser(), ["  ", "\n"])
    assert "".join(content) == "  \n" and calls == []


def test_an_unclosed_call_is_parsed_at_the_end_if_complete() -> None:
    _, calls = feed_all(ToolCallParser(), ['<tool_call>\n{"name": "f", "arguments": {}}'])
    assert [c.name for c in calls] == ["f"]


def test_a_broken_call_is_recorded_as_failed() -> None:
    parser = ToolCallParser()
    feed_all(parser, ['<tool_call>{"name": </tool_call>'])
    assert parser.failed is not None


def test_string_arguments_are_normalised_to_json_text() -> None:
    assert parse_call('{"name": "f", "arguments": "{\\"a\\": 1}"}') == ("f", '{"a": 1}')


def test_auto_grammar_allows_text_or_valid_calls_but_never_a_call_after_text(vocab: Vocabulary) -> None:
    grammar = tool_call_grammar(TOOLS, mode="auto", parallel=True)
    assert vocab.accepts(grammar, "It is sunny in Paris, <b>bold</b> and a <tool tag.")
    assert vocab.accepts(grammar, CALL)
    assert vocab.accepts(grammar, TWO_CALLS)
    assert not vocab.accepts(grammar, "Let me check. " + CALL, complete=False)
    assert not vocab.accepts(grammar, "Sure: <tool_call>", complete=False)
    assert not vocab.accepts(grammar, CALL.replace('"Paris"', "5"), complete=False)
    assert not vocab.accepts(grammar, CALL.replace("get_weather", "launch"), complete=False)


@pytest.mark.parametrize("parallel", [True, False])
def test_required_grammar_allows_only_calls(vocab: Vocabulary, parallel: bool) -> None:
    grammar = tool_call_grammar(TOOLS, mode="required", parallel=parallel)
    assert vocab.accepts(grammar, CALL)
    assert vocab.accepts(grammar, TWO_CALLS) is parallel
    assert not vocab.accepts(grammar, "Paris", complete=False)
    assert not vocab.accepts(grammar, "", complete=True)
