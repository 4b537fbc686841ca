"""Reasoning split with a scripted engine that thinks in <think> tags, and the think-block grammar."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.grammar_check import Vocabulary, vocabulary
from tiergate.engines.base import PreparedPrompt, SamplingParams, TokenDelta
from tiergate.generation.json_schema import json_object_grammar
from tiergate.generation.output import OutputPlan, OutputReader
from tiergate.generation.reasoning import ReasoningSplitter, think_grammar


@pytest.fixture(scope="module")
def vocab(models_dir: Path) -> Vocabulary:
    return vocabulary(models_dir)


SCRIPT = ["<th", "ink>\nThe user", " wants 4.", "\n</thi", "nk>\n\n", "The answer", " is 4."]


class ScriptedEngine:
    """Yields fixed pieces, one token each, like an engine would."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces

    async def generate(
        self, prompt: PreparedPrompt, params: SamplingParams, slot: int
    ) -> AsyncIterator[TokenDelta]:
        for piece in self.pieces:
            yield TokenDelta(piece, 1)
        yield TokenDelta("", 0, "stop")


def run(plan: OutputPlan, pieces: list[str] = SCRIPT) -> tuple[OutputReader, list]:
    reader = OutputReader(plan)

    async def drive() -> list:
        deltas = []
        async for delta in ScriptedEngine(pieces).generate(
            PreparedPrompt("", []), SamplingParams(max_tokens=9), 0
        ):
            out = reader.feed(delta.text)
            reader.count(delta.tokens)  # the order ChatRun.events uses
            if out:
                deltas.append(out)
        if out := reader.flush():
            deltas.append(out)
        return deltas

    return reader, asyncio.run(drive())


def test_parsed_moves_thinking_to_reasoning_and_counts_its_tokens() -> None:
    reader, deltas = run(OutputPlan(reasoning="parsed"))
    assert reader.message_content() == "The answer is 4."
    assert reader.message_reasoning() == "The user wants 4."
    assert "".join(d.reasoning for d in deltas).strip() == "The user wants 4."
    assert "<think>" not in "".join(d.content for d in deltas)
    assert reader.reasoning_tokens == 4


def test_hidden_drops_the_thinking_but_still_counts_it() -> None:
    reader, deltas = run(OutputPlan(reasoning="hidden"))
    assert reader.message_content() == "The answer is 4."
    assert reader.message_reasoning() is None
    assert all(not d.reasoning for d in deltas)
    assert reader.reasoning_tokens == 4


def test_raw_keeps_the_tags_in_the_content() -> None:
    reader, _ = run(OutputPlan(reasoning="raw"))
    assert reader.message_content() == "".join(SCRIPT)
    assert reader.reasoning_tokens > 0


def test_a_template_that_opens_the_think_block_is_handled() -> None:
    reader, _ = run(OutputPlan(reasoning="parsed", starts_inside_think=True), ["hmm", "</think>", "ok"])
    assert (reader.message_reasoning(), reader.message_content()) == ("hmm", "ok")


@pytest.mark.parametrize("text", ["plain answer", "<b>bold</b>", "  <thin air"])
def test_text_without_a_think_block_is_all_content(text: str) -> None:
    splitter = ReasoningSplitter()
    parts = [splitter.feed(c) for c in text] + [splitter.flush()]
    assert "".join(p.content for p in parts) == text
    assert not any(p.reasoning for p in parts)


def test_an_answer_begun_by_a_prefill_is_not_searched_for_a_think_block() -> None:
    reader, _ = run(OutputPlan(reasoning="parsed", answering=True), ["<think>", "x</think>", " y"])
    assert reader.message_reasoning() is None
    assert reader.message_content() == "<think>x</think> y"


def test_the_empty_block_of_reasoning_effort_none_is_dropped_and_counts_no_reasoning_tokens() -> None:
    plan = OutputPlan(reasoning="hidden", skip_thinking=True)
    reader, _ = run(plan, ["<think>", "\n\n", "</think>", "\n\n", "Four."])
    assert reader.message_content() == "Four."
    assert reader.reasoning_tokens == 0


def test_the_grammar_outside_a_block_allows_thinking_first_or_answering_at_once(vocab: Vocabulary) -> None:
    grammar = think_grammar(json_object_grammar(), starts_inside=False, skip=False)
    assert grammar is not None
    assert vocab.accepts(grammar, '<think>\nA <b>bold</b> plan, a < b.\n</think>\n\n{"a": 1}')
    assert vocab.accepts(grammar, '{"a": 1}')
    assert not vocab.accepts(grammar, "Sure! " + '{"a": 1}', complete=False)
    assert not vocab.accepts(grammar, '<think>x</think>{"a": 1}</think>', complete=False)


def test_the_grammar_inside_a_block_the_template_opened_must_close_it_first(vocab: Vocabulary) -> None:
    grammar = think_grammar(json_object_grammar(), starts_inside=True, skip=False)
    assert grammar is not None
    assert vocab.accepts(grammar, 'The user wants JSON.\n</think>\n\n{"a": 1}')
    assert not vocab.accepts(grammar, '{"a": 1}')  # still thinking: the block never closed


@pytest.mark.parametrize("starts_inside", [False, True])
def test_reasoning_effort_none_forces_an_empty_block_then_any_answer(
    vocab: Vocabulary, starts_inside: bool
) -> None:
    grammar = think_grammar(None, starts_inside=starts_inside, skip=True)
    assert grammar is not None
    opening = "" if starts_inside else "<think>"
    assert vocab.accepts(grammar, opening + "\n\n</think>\n\nParis is the capital of France.")
    assert not vocab.accepts(grammar, opening + "Let me think about it", complete=False)


def test_without_an_answer_grammar_thinking_is_left_free() -> None:
    assert think_grammar(None, starts_inside=True, skip=False) is None
