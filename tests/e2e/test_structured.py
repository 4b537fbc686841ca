"""JSON mode, structured outputs and prefill against the real model, through the groq SDK."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import groq
import jsonschema
import pytest

from tests.conftest import LiveServer

MODEL = "qwen2.5-coder-0.5b-instruct"
# Twenty varied prompts; even ones run in JSON mode, odd ones under a strict schema (both paths, 20 in all).
PROMPTS = [
    "Describe a cat.",
    "Pick a fruit.",
    "Name a planet and say if it has rings.",
    "What is 2 + 2?",
    "Suggest a name for a boat.",
    "Give me a color you like.",
    "Is the sun a star?",
    "Tell me about Paris in one word.",
    "What language is spoken in Brazil?",
    "Rate pizza from 1 to 10.",
    "Invent a username.",
    "What is the capital of Japan?",
    "Name a programming language.",
    "How many legs does a spider have?",
    "Choose a musical instrument.",
    "Is water wet?",
    "Describe the weather today.",
    "Name a famous scientist.",
    "Pick a number between 1 and 100.",
    "What animal says moo?",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"enum": ["low", "medium", "high"]},
        "score": {"type": "integer"},
        "ok": {"type": "boolean"},
    },
    "required": ["answer", "confidence", "score", "ok"],
    "additionalProperties": False,
}


def client(server: LiveServer) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, timeout=300)


def _ask(server: LiveServer, index: int) -> tuple[int, str]:
    system = "Reply with a short JSON object; `answer` holds at most five words."
    args: dict[str, object] = {}
    if index % 2:
        args["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": SCHEMA, "strict": True},
        }
    else:
        args["response_format"] = {"type": "json_object"}
    completion = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": PROMPTS[index]}],
        # Room for the whole object: a cut-off object is (correctly) a 400 json_validate_failed.
        max_completion_tokens=160,
        temperature=0.7,
        seed=index,
        **args,
    )
    return index, completion.choices[0].message.content or ""


def test_json_mode_and_strict_schema_outputs_always_parse_and_validate(server: LiveServer) -> None:
    with ThreadPoolExecutor(2) as pool:  # the server has two slots
        results = list(pool.map(lambda i: _ask(server, i), range(len(PROMPTS))))
    for index, text in results:
        value = json.loads(text)
        assert isinstance(value, dict), text
        if index % 2:
            jsonschema.validate(value, SCHEMA)


def test_json_mode_streams_a_parseable_object(server: LiveServer) -> None:
    stream = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give a JSON object with key `city` set to a city."}],
        response_format={"type": "json_object"},
        max_completion_tokens=40,
        temperature=0,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert isinstance(json.loads(text), dict)


def test_unsupported_strict_schema_keyword_is_a_400_naming_it(server: LiveServer) -> None:
    schema = {**SCHEMA, "properties": {**SCHEMA["properties"], "answer": {"type": "string", "pattern": "^a"}}}
    with pytest.raises(groq.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": schema, "strict": True},
            },
            max_completion_tokens=8,
        )
    error = info.value.body["error"]  # type: ignore[index]
    assert "pattern" in error["message"]
    assert error["param"] == "response_format.json_schema.schema"


def test_too_few_tokens_for_json_is_json_validate_failed_with_the_text(server: LiveServer) -> None:
    with pytest.raises(groq.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Describe a dog as a JSON object with five keys."}],
            response_format={"type": "json_object"},
            max_completion_tokens=3,
            temperature=0,
        )
    error = info.value.body["error"]  # type: ignore[index]
    assert error["code"] == "json_validate_failed"
    assert error["failed_generation"].startswith("{")


def test_prefill_is_continued_not_answered(server: LiveServer) -> None:
    completion = client(server).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Write a Python function that adds two numbers."},
            {"role": "assistant", "content": "```python\ndef add_numbers("},
        ],
        max_completion_tokens=16,
        temperature=0,
        stop=["```\n"],
    )
    text = completion.choices[0].message.content or ""
    # A continuation picks up inside the parameter list; a fresh answer would restart with ``` or prose.
    assert not text.lstrip().startswith("```")
    assert ")" in text and ":" in text


def test_reasoning_options_on_a_non_reasoning_model_are_a_400_naming_the_model(server: LiveServer) -> None:
    with pytest.raises(groq.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            reasoning_format="parsed",
            max_completion_tokens=4,
        )
    assert MODEL in info.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(groq.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            reasoning_format="parsed",
            include_reasoning=True,
            max_completion_tokens=4,
        )
    assert "mutually exclusive" in info.value.body["error"]["message"]  # type: ignore[index]
