"""JSON mode, structured outputs and prefill against the real model, through the groq SDK."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import groq
import jsonschema
import pytest

from tests.conftest import LiveServer

MODEL = "qwen2.5-coder-0.5b-instruct"
# The issue's promise: for 20 varied prompts JSON mode always parses, and strict schema output always
# validates. Every prompt runs in both modes (40 requests); outputs are kept short so the file stays
# around a minute on two CPU cores.
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
_WORD = {"type": "string", "description": "one or two words"}
_ANIMAL = {
    "type": "object",
    "properties": {"name": _WORD, "legs": {"type": "integer"}},
    "required": ["name", "legs"],
    "additionalProperties": False,
}


def _object(**properties: object) -> dict[str, object]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# Strict schemas, one per prompt in turn: flat, enums, nested objects, arrays (bounded, of objects),
# anyOf (nullable and a union of objects), $ref into $defs, formats. (Recursive $refs are in the unit
# tests: a small model at temperature 0.7 may nest them until max_completion_tokens.)
SCHEMAS: list[dict[str, object]] = [
    _object(answer=_WORD, confidence={"enum": ["low", "medium", "high"]}, score={"type": "integer"}),
    _object(fruit=_WORD, color={"enum": ["red", "yellow", "green", "orange", "other"]}),
    _object(planet=_object(name=_WORD, rings={"type": "boolean"})),
    _object(result={"type": "number"}, correct={"type": "boolean"}),
    _object(names={"type": "array", "items": _WORD, "minItems": 1, "maxItems": 2}),
    _object(color={"anyOf": [_WORD, {"type": "null"}]}, hex={"anyOf": [_WORD, {"type": "null"}]}),
    _object(answer={"enum": ["yes", "no"]}, kind={"const": "star"}),
    _object(city=_WORD, tags={"type": "array", "items": {"enum": ["art", "food", "love"]}, "maxItems": 2}),
    {**_object(language={"$ref": "#/$defs/word"}), "$defs": {"word": _WORD}},
    _object(score={"type": "integer"}, reason={"anyOf": [_WORD, {"type": "null"}]}),
    _object(user=_object(handle=_WORD, age={"type": ["integer", "null"]})),
    _object(country=_WORD, capital=_object(name=_WORD, big={"type": "boolean"})),
    _object(
        items={
            "type": "array",
            "items": _object(name=_WORD, year={"type": "integer"}),
            "minItems": 1,
            "maxItems": 2,
        }
    ),
    {**_object(animal={"$ref": "#/$defs/animal"}), "$defs": {"animal": _ANIMAL}},
    _object(
        pick={
            "anyOf": [
                _object(strings=_WORD),
                _object(keys={"type": "integer"}),
            ]
        }
    ),
    _object(wet={"type": "boolean"}, why=_WORD),
    _object(day={"type": "string", "format": "date"}, sky={"enum": ["sunny", "cloudy", "rainy"]}),
    {
        **_object(person={"$ref": "#/$defs/person"}),
        "$defs": {"person": _object(name=_WORD, field=_WORD)},
    },
    _object(number={"type": "integer"}, even={"type": "boolean"}),
    {
        **_object(
            animal={"enum": ["cow", "dog", "cat"]},
            sounds={"type": "array", "items": {"$ref": "#/$defs/sound"}, "maxItems": 2},
        ),
        "$defs": {"sound": _WORD},
    },
]
SYSTEM = "Reply with a short JSON object. Every string is one or two words. Keep it small."


def client(server: LiveServer) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, timeout=300)


def _ask(server: LiveServer, index: int, strict: bool) -> tuple[int, bool, str]:
    if strict:
        fmt: dict[str, object] = {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": SCHEMAS[index], "strict": True},
        }
    else:
        fmt = {"type": "json_object"}
    completion = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPTS[index]}],
        # Room for the whole object: a cut-off object is (correctly) a 400 json_validate_failed.
        max_completion_tokens=96,
        temperature=0.7,
        seed=index,
        response_format=fmt,  # type: ignore[arg-type]
    )
    return index, strict, completion.choices[0].message.content or ""


def test_twenty_prompts_in_json_mode_parse_and_under_strict_schemas_validate(server: LiveServer) -> None:
    assert len(PROMPTS) == len(SCHEMAS) == 20
    jobs = [(index, strict) for index in range(len(PROMPTS)) for strict in (False, True)]
    with ThreadPoolExecutor(2) as pool:  # the server has two slots
        results = list(pool.map(lambda job: _ask(server, *job), jobs))
    for index, strict, text in results:
        value = json.loads(text)
        assert isinstance(value, dict), text
        if strict:
            jsonschema.validate(value, SCHEMAS[index])


def test_strict_false_is_enforced_best_effort_and_validated(server: LiveServer) -> None:
    # Optional properties and a keyword outside the strict subset: accepted with strict false, the
    # grammar follows what it can, and what comes back validates (or is a 400 json_validate_failed).
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 40}, "legs": {"type": "integer"}},
        "required": ["legs"],
    }
    completion = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Describe a spider."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": schema, "strict": False},
        },
        max_completion_tokens=48,
        temperature=0,
    )
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)


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
    schema = _object(answer={"type": "string", "pattern": "^a"})
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
