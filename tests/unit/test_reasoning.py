"""Reasoning split with a scripted engine that thinks in <think> tags, through the real OutputReader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tiergate.engines.base import PreparedPrompt, SamplingParams, TokenDelta
from tiergate.generation.output import OutputPlan, OutputReader
from tiergate.generation.reasoning import ReasoningSplitter

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
