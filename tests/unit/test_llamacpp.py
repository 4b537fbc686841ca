"""LlamaCppEngine against the real default model (Qwen2.5-Coder-0.5B): a few tokens per test.

The model is assembled once into TIERGATE_TEST_DATA_DIR (default <repo>/.tiergate-test) and shared by
every test in this module, with two slots.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tiergate.engines.base import PreparedPrompt, SamplingParams, TokenDelta
from tiergate.engines.llamacpp import LlamaCppEngine
from tiergate.engines.registry import DEFAULT_MODELS
from tiergate.engines.weights import WeightsUnavailable, ensure_weights
from tiergate.errors import EngineFailure, InvalidRequest

DATA_DIR = Path(os.environ.get("TIERGATE_TEST_DATA_DIR", Path(__file__).parents[2] / ".tiergate-test"))
IM_START = "<|im_start|>"


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    spec = DEFAULT_MODELS[0]
    try:
        path = ensure_weights(spec, DATA_DIR / "models")
    except WeightsUnavailable as exc:
        pytest.skip(f"model weights not installed: {exc}")
    # One thread: the shared CI machine is oversubscribed, where llama.cpp's spinning thread barrier
    # makes 2 threads on 2 busy cores many times slower (see bench/engine.py).
    engine = LlamaCppEngine(spec, path, parallel=2, threads=1)
    yield engine
    asyncio.run(engine.close())


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def collect(
    engine: LlamaCppEngine, prompt: PreparedPrompt, params: SamplingParams, slot: int = 0
) -> list[TokenDelta]:
    return [delta async for delta in engine.generate(prompt, params, slot)]


def text_of(deltas: list[TokenDelta]) -> str:
    return "".join(d.text for d in deltas)


def test_the_models_own_chat_template_is_applied(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(user("hi"))
    assert prompt.text.endswith(f"{IM_START}user\nhi<|im_end|>\n{IM_START}assistant\n")
    # Qwen2.5's template adds its default system turn when none is given.
    assert prompt.text.startswith(f"{IM_START}system\n")


def test_prompt_tokens_are_exact_with_special_tokens_parsed(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare([{"role": "system", "content": "Be brief."}, *user("héllo 🎉")])
    assert prompt.tokens == engine.tokenize(prompt.text)
    im_start = engine.tokenize(IM_START)
    assert len(im_start) == 1  # one special token, not the characters "<", "|", ...
    assert prompt.tokens.count(im_start[0]) == 3
    assert engine.detokenize(prompt.tokens) == prompt.text


def test_tools_are_rendered_by_the_template(engine: LlamaCppEngine) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    prompt = engine.prepare(user("Weather in Paris?"), tools=tools)
    assert "<tools>" in prompt.text
    assert '"name": "get_weather"' in prompt.text


def test_tool_call_arguments_given_as_json_text_render_as_objects(engine: LlamaCppEngine) -> None:
    messages = [
        *user("Weather in Paris?"),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": '{"city": "Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    text = engine.prepare(messages).text
    assert '"arguments": {"city": "Paris"}' in text
    assert "<tool_response>\nsunny\n</tool_response>" in text


async def test_an_assistant_prefill_is_continued_not_closed(engine: LlamaCppEngine) -> None:
    messages = [
        *user("Write the digits 1 to 9 separated by commas."),
        {"role": "assistant", "content": "1, 2, 3,"},
    ]
    prompt = engine.prepare(messages, continue_final_message=True)
    assert prompt.text.endswith(f"{IM_START}assistant\n1, 2, 3,")
    deltas = await collect(engine, prompt, SamplingParams(max_tokens=4, temperature=0))
    assert text_of(deltas).startswith(" 4")


def test_continue_final_message_needs_an_assistant_last(engine: LlamaCppEngine) -> None:
    with pytest.raises(InvalidRequest):
        engine.prepare(user("hi"), continue_final_message=True)


async def test_streaming_yields_several_deltas_and_max_tokens_ends_with_length(
    engine: LlamaCppEngine,
) -> None:
    prompt = engine.prepare(user("Count from 1 to 50, separated by spaces."))
    deltas = await collect(engine, prompt, SamplingParams(max_tokens=6, temperature=0))
    assert len(deltas) >= 3
    assert sum(d.tokens for d in deltas) == 6
    assert [d.finish_reason for d in deltas] == [None] * (len(deltas) - 1) + ["length"]
    assert text_of(deltas).strip().startswith("1")


async def test_an_end_of_turn_token_finishes_with_stop(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(user("Reply with just the word OK."))
    deltas = await collect(engine, prompt, SamplingParams(max_tokens=20, temperature=0))
    assert deltas[-1].finish_reason == "stop"
    assert "<|im_end|>" not in text_of(deltas)
    assert sum(d.tokens for d in deltas) < 20


async def test_the_same_seed_gives_the_same_text_on_any_slot(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(user("Invent a name for a cat."))
    params = SamplingParams(max_tokens=10, temperature=1.0, seed=1234)
    first = text_of(await collect(engine, prompt, params, slot=0))
    again = text_of(await collect(engine, prompt, params, slot=1))
    assert first == again
    others = {text_of(await collect(engine, prompt, SamplingParams(10, 1.0, seed=s))) for s in (1, 2, 3)}
    assert others - {first}, "different seeds never changed the sample"


async def test_closing_the_stream_frees_the_slot_at_once(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(user("Write a long story about a lighthouse."))
    stream = engine.generate(prompt, SamplingParams(max_tokens=400, temperature=0), slot=1)
    await anext(stream)
    started = time.perf_counter()
    await stream.aclose()
    assert time.perf_counter() - started < 0.5
    # The slot's worker is idle: a new request on it starts without waiting out the first one.
    started = time.perf_counter()
    deltas = await collect(
        engine, engine.prepare(user("Say hi.")), SamplingParams(max_tokens=2, temperature=0), 1
    )
    assert time.perf_counter() - started < 5
    assert sum(d.tokens for d in deltas) <= 2


async def test_two_slots_generate_concurrently(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(user("List three colors."))
    params = SamplingParams(max_tokens=5, temperature=0)
    a, b = await asyncio.gather(collect(engine, prompt, params, 0), collect(engine, prompt, params, 1))
    assert text_of(a) == text_of(b)
    assert sum(d.tokens for d in a) == 5


async def test_grammar_constrains_the_output(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(user("Is the sky green? Answer in one word."))
    params = SamplingParams(max_tokens=8, temperature=1.0, seed=7, grammar='root ::= "maybe" | "perhaps"')
    deltas = await collect(engine, prompt, params)
    assert text_of(deltas) in {"maybe", "perhaps"}
    assert deltas[-1].finish_reason == "stop"


# Bounded lengths, so every sentence fits in max_tokens and the grammar must complete.
JSONISH_GRAMMAR = r"""
root ::= "{" ws "\"name\"" ws ":" ws name ws "," ws rest
rest ::= "\"age\"" ws ":" ws age ws "," ws "\"pet\"" ws ":" ws pet ws "}"
name ::= "\"" [A-Za-z ]{1,10} "\""
age ::= [1-9] [0-9]?
pet ::= "true" | "false" | "null"
ws ::= [ ]?
"""


async def test_json_grammar_output_always_parses_when_sampling(engine: LlamaCppEngine) -> None:
    prompt = engine.prepare(
        user("Tell me about a person as JSON with a name, an age and whether they own a pet.")
    )
    for seed in (1, 2, 3):
        params = SamplingParams(max_tokens=60, temperature=1.0, seed=seed, grammar=JSONISH_GRAMMAR)
        deltas = await collect(engine, prompt, params)
        text = text_of(deltas)
        assert deltas[-1].finish_reason == "stop", text
        document = json.loads(text)
        assert set(document) == {"name", "age", "pet"}
        assert isinstance(document["age"], int)
    # The lazy grammar check still leaves the sample fixed by the seed.
    assert text_of(await collect(engine, prompt, params, slot=1)) == text


async def test_a_grammar_that_rejects_the_models_first_choice_is_still_followed(
    engine: LlamaCppEngine,
) -> None:
    prompt = engine.prepare(user("Write a short poem about the sea."))
    natural = text_of(await collect(engine, prompt, SamplingParams(max_tokens=1, temperature=0)))
    assert not natural.lower().startswith(("y", "n")), "the model's first pick would fit the grammar"
    for temperature, seed in ((0, None), (1.0, 5), (1.0, 6)):
        params = SamplingParams(
            max_tokens=4, temperature=temperature, seed=seed, grammar='root ::= "yes" | "no"'
        )
        deltas = await collect(engine, prompt, params)
        assert text_of(deltas) in {"yes", "no"}
        assert deltas[-1].finish_reason == "stop"


async def test_multibyte_characters_split_across_tokens_are_never_emitted_broken(
    engine: LlamaCppEngine,
) -> None:
    target = "🎉😀你好𝄞"
    prompt = engine.prepare(user("Print some emoji."))
    params = SamplingParams(max_tokens=30, temperature=0, grammar=f'root ::= "{target}"')
    deltas = await collect(engine, prompt, params)
    produced = sum(d.tokens for d in deltas)
    assert text_of(deltas) == target
    assert all("\ufffd" not in d.text for d in deltas)
    # More tokens than emitted pieces proves some characters spanned several tokens.
    assert produced > len([d for d in deltas if d.text])


def test_a_prompt_that_fills_the_context_is_rejected_and_completions_are_clamped(
    engine: LlamaCppEngine,
) -> None:
    window = engine.spec.context_window
    assert engine.completion_budget(100, 50) == 50
    assert engine.completion_budget(window - 3, 50) == 3
    with pytest.raises(InvalidRequest) as info:
        engine.completion_budget(window, 1)
    assert info.value.code == "context_length_exceeded"


async def test_generate_rejects_an_oversized_prompt_before_decoding(engine: LlamaCppEngine) -> None:
    too_long = PreparedPrompt(text="", tokens=[0] * engine.spec.context_window)
    with pytest.raises(InvalidRequest):
        await collect(engine, too_long, SamplingParams(max_tokens=1))


def test_the_fingerprint_looks_like_groqs(engine: LlamaCppEngine) -> None:
    assert engine.fingerprint.startswith("fp_")
    assert len(engine.fingerprint) == 13
    int(engine.fingerprint[3:], 16)


async def test_an_invalid_grammar_fails_the_request_and_leaves_the_slot_usable(
    engine: LlamaCppEngine,
) -> None:
    prompt = engine.prepare(user("Say hi."))
    with pytest.raises(EngineFailure):
        await collect(engine, prompt, SamplingParams(max_tokens=2, grammar="root ::= ("))
    deltas = await collect(engine, prompt, SamplingParams(max_tokens=2, temperature=0))
    assert sum(d.tokens for d in deltas) == 2


async def test_a_repeated_prompt_on_a_slot_gives_the_same_greedy_text(engine: LlamaCppEngine) -> None:
    # The second run reuses the slot's cached prefix; the result must not change.
    prompt = engine.prepare(user("Name a prime number."))
    params = SamplingParams(max_tokens=4, temperature=0)
    assert text_of(await collect(engine, prompt, params, 0)) == text_of(
        await collect(engine, prompt, params, 0)
    )


def _thread_nice(tid: int) -> int:
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])  # field 19 of proc_pid_stat(5): nice


@pytest.mark.skipif(sys.platform != "linux", reason="nice is per thread on Linux only")
def test_the_decode_thread_and_the_llama_threads_it_starts_run_nicer_than_the_server() -> None:
    spec = DEFAULT_MODELS[0]
    try:
        path = ensure_weights(spec, DATA_DIR / "models")
    except WeightsUnavailable as exc:
        pytest.skip(f"model weights not installed: {exc}")
    base = _thread_nice(threading.get_native_id())
    before = {int(t) for t in os.listdir("/proc/self/task")}
    nicer = LlamaCppEngine(spec, path, parallel=1, threads=2, nice=3)
    try:
        prompt = nicer.prepare(user("Say hi."))
        asyncio.run(collect(nicer, prompt, SamplingParams(max_tokens=2, temperature=0)))
        assert nicer._thread.native_id is not None
        assert _thread_nice(nicer._thread.native_id) == base + 3
        started = {int(t) for t in os.listdir("/proc/self/task")} - before - {nicer._thread.native_id}
        # llama.cpp's second decode thread (OpenMP's worker) was started by the decode thread.
        assert any(_thread_nice(tid) == base + 3 for tid in started)
        assert _thread_nice(threading.get_native_id()) == base  # the caller's thread is untouched
    finally:
        asyncio.run(nicer.close())
