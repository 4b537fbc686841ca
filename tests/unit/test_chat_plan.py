"""Output options on the request road, over HTTP with scripted engines: reasoning, tools, strict:false.

The engines here ignore the grammar (they emit a fixed script), so what is tested is how the road
reads the output back and which grammar it hands the engine; the grammars themselves are checked
against llama.cpp with the real vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.grammar_check import Vocabulary, vocabulary
from tests.scripted_app import TWO_WEATHER_CALLS as CALLS
from tests.scripted_app import RecordingEngine, post, scripted_app, sse_data

THINKING = ["<think>", "The user", " wants 4.", "</think>", "\n\n", "The answer", " is 4."]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


@pytest.fixture
def app_and_key(tmp_path: Path) -> tuple[Any, str]:
    return scripted_app(tmp_path, {"thinker": {"reasoning": True}, "plain": {}})


@pytest.fixture(scope="module")
def vocab(models_dir: Path) -> Vocabulary:
    return vocabulary(models_dir)


def engine(app: Any, model: str, pieces: list[str], prompt_ends: str = "") -> RecordingEngine:
    scripted: RecordingEngine = app.state.runtime.engines[model]
    scripted.pieces = pieces
    scripted.prompt_ends = prompt_ends
    return scripted


async def chat(app: Any, key: str, model: str, **body: Any) -> Any:
    messages = body.pop("messages", [{"role": "user", "content": "What is 2 + 2?"}])
    return await post(app, key, "/chat/completions", {"model": model, "messages": messages, **body})


async def test_parsed_reasoning_goes_to_message_reasoning_and_is_counted(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    engine(app, "thinker", THINKING)
    response = await chat(app, key, "thinker", reasoning_format="parsed")
    assert response.status_code == 200, response.text
    body = response.json()
    message = body["choices"][0]["message"]
    assert message["reasoning"] == "The user wants 4."
    assert message["content"] == "The answer is 4."
    # <think>, two pieces of thinking, </think>: four tokens spent reasoning.
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


async def test_parsed_reasoning_streams_as_delta_reasoning(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key
    engine(app, "thinker", THINKING)
    response = await chat(app, key, "thinker", reasoning_format="parsed", stream=True)
    deltas = [chunk["choices"][0]["delta"] for chunk in sse_data(response) if chunk.get("choices")]
    assert "".join(d.get("reasoning", "") for d in deltas).strip() == "The user wants 4."
    assert "".join(d.get("content", "") for d in deltas) == "The answer is 4."


@pytest.mark.parametrize("options", [{"reasoning_format": "hidden"}, {"include_reasoning": False}])
async def test_hidden_reasoning_is_dropped_but_still_counted(
    app_and_key: tuple[Any, str], options: dict[str, Any]
) -> None:
    app, key = app_and_key
    engine(app, "thinker", THINKING)
    body = (await chat(app, key, "thinker", **options)).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "The answer is 4."}
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4


async def test_raw_reasoning_stays_in_the_content(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key
    engine(app, "thinker", THINKING)
    message = (await chat(app, key, "thinker", reasoning_format="raw")).json()["choices"][0]["message"]
    assert message["content"] == "".join(THINKING)
    assert "reasoning" not in message


@pytest.mark.parametrize(
    "options",
    [{"response_format": {"type": "json_object"}}, {"tools": [WEATHER]}],
)
async def test_raw_reasoning_with_json_mode_or_tools_is_a_400(
    app_and_key: tuple[Any, str], options: dict[str, Any]
) -> None:
    app, key = app_and_key
    response = await chat(app, key, "thinker", reasoning_format="raw", **options)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "reasoning_format"


async def test_reasoning_format_and_include_reasoning_together_are_a_400(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    response = await chat(app, key, "thinker", reasoning_format="parsed", include_reasoning=True)
    assert response.status_code == 400
    assert "mutually exclusive" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("reasoning_format", "parsed"), ("include_reasoning", True), ("reasoning_effort", "low")],
)
async def test_reasoning_options_on_a_model_that_does_not_reason_are_a_400_naming_it(
    app_and_key: tuple[Any, str], field: str, value: Any
) -> None:
    app, key = app_and_key
    response = await chat(app, key, "plain", **{field: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and "`plain`" in error["message"]


async def test_asking_a_model_that_does_not_reason_not_to_reason_is_fine(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    engine(app, "plain", ["ok"])
    assert (await chat(app, key, "plain", reasoning_effort="none")).status_code == 200


async def test_reasoning_effort_none_makes_the_model_close_an_empty_block_at_once(
    app_and_key: tuple[Any, str], vocab: Vocabulary
) -> None:
    app, key = app_and_key
    scripted = engine(app, "thinker", ["<think>", "\n\n", "</think>", "\n\n", "Four."])
    body = (await chat(app, key, "thinker", reasoning_effort="none")).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Four."}
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    grammar = scripted.params.grammar  # type: ignore[union-attr]
    assert grammar is not None
    assert vocab.accepts(grammar, "<think>\n\n</think>\n\nFour.")
    assert not vocab.accepts(grammar, "<think>Let me think", complete=False)


async def test_json_mode_after_a_think_block_the_template_opened_can_close_it(
    app_and_key: tuple[Any, str], vocab: Vocabulary
) -> None:
    # The template ends the prompt in `<think>`: the grammar must let the model write `</think>`.
    app, key = app_and_key
    scripted = engine(
        app, "thinker", ["Keys:", " a.", "</think>", "\n\n", '{"a": 1}'], prompt_ends="<think>\n"
    )
    response = await chat(app, key, "thinker", response_format={"type": "json_object"})
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert (message["reasoning"], message["content"]) == ("Keys: a.", '{"a": 1}')
    grammar = scripted.params.grammar  # type: ignore[union-attr]
    assert vocab.accepts(grammar, 'Keys: a.</think>\n\n{"a": 1}')
    assert not vocab.accepts(grammar, '{"a": 1}')  # the open block must be closed first


async def test_json_mode_on_a_reasoning_model_may_think_first_or_answer_at_once(
    app_and_key: tuple[Any, str], vocab: Vocabulary
) -> None:
    app, key = app_and_key
    scripted = engine(app, "thinker", ['{"a": 1}'])
    assert (await chat(app, key, "thinker", response_format={"type": "json_object"})).status_code == 200
    grammar = scripted.params.grammar  # type: ignore[union-attr]
    assert vocab.accepts(grammar, '{"a": 1}') and vocab.accepts(grammar, '<think>hm</think>{"a": 1}')


@pytest.mark.parametrize(
    ("prefill", "reasoning", "content"),
    [
        ("<think>\nFirst,", "two and two.", "Four."),
        ("The answer:", None, "<think>two and two.</think>\nFour."),
    ],
)
async def test_a_prefill_continues_the_thinking_it_opened_or_the_answer_it_began(
    app_and_key: tuple[Any, str], prefill: str, reasoning: str | None, content: str
) -> None:
    app, key = app_and_key
    pieces = ["<think>", "two and two.", "</think>", "\nFour."]
    engine(app, "thinker", pieces[1:] if prefill.startswith("<think>") else pieces)
    messages = [{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": prefill}]
    message = (await chat(app, key, "thinker", messages=messages, reasoning_format="parsed")).json()
    message = message["choices"][0]["message"]
    assert (message.get("reasoning"), message["content"]) == (reasoning, content)


async def test_tools_on_a_reasoning_model_may_think_then_call(
    app_and_key: tuple[Any, str], vocab: Vocabulary
) -> None:
    app, key = app_and_key
    scripted = engine(app, "thinker", ["<think>", "Paris.", "</think>", "\n", *CALLS[:3]])
    response = await chat(app, key, "thinker", tools=[WEATHER], tool_choice="required")
    message = response.json()["choices"][0]["message"]
    assert message["reasoning"] == "Paris." and len(message["tool_calls"]) == 1
    grammar = scripted.params.grammar  # type: ignore[union-attr]
    call = "".join(CALLS[:3])
    assert vocab.accepts(grammar, "<think>Paris.</think>\n" + call) and vocab.accepts(grammar, call)
    assert not vocab.accepts(grammar, "<think>Paris.</think>\nSunny.", complete=False)


async def test_streamed_parallel_calls_have_no_whitespace_content_between_them(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    engine(app, "plain", CALLS)
    response = await chat(app, key, "plain", tools=[WEATHER], tool_choice="required", stream=True)
    deltas = [chunk["choices"][0]["delta"] for chunk in sse_data(response) if chunk.get("choices")]
    contents = [d["content"] for d in deltas if d.get("content") is not None]
    assert all(content == "" for content in contents), contents  # only the opening role chunk's ""
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    assert [(c["index"], c["function"]["arguments"]) for c in calls] == [
        (0, '{"city": "Paris"}'),
        (1, '{"city": "Rome"}'),
    ]


async def test_parallel_calls_leave_no_content_in_the_message(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key
    engine(app, "plain", CALLS)
    choice = (await chat(app, key, "plain", tools=[WEATHER], tool_choice="required")).json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None and len(choice["message"]["tool_calls"]) == 2


def _schema_format(strict: bool) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]}
    return {"type": "json_schema", "json_schema": {"name": "n", "schema": schema, "strict": strict}}


async def test_strict_false_output_is_validated_after_generation(app_and_key: tuple[Any, str]) -> None:
    # `maximum` is outside what the grammar holds; strict:false accepts the schema and validates after.
    app, key = app_and_key
    engine(app, "plain", ['{"n": ', "3}"])
    ok = await chat(app, key, "plain", response_format=_schema_format(strict=False))
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == '{"n": 3}'
    engine(app, "plain", ['{"n": ', "7}"])
    failed = await chat(app, key, "plain", response_format=_schema_format(strict=False))
    assert failed.status_code == 400
    error = failed.json()["error"]
    assert error["code"] == "json_validate_failed" and error["failed_generation"] == '{"n": 7}'
    assert "maximum" in error["message"] or "greater than" in error["message"]


async def test_strict_true_refuses_the_keyword_it_cannot_enforce(app_and_key: tuple[Any, str]) -> None:
    app, key = app_and_key
    response = await chat(app, key, "plain", response_format=_schema_format(strict=True))
    assert response.status_code == 400 and "maximum" in response.json()["error"]["message"]


async def test_unsatisfiable_array_bounds_are_a_400_before_any_generation(
    app_and_key: tuple[Any, str],
) -> None:
    app, key = app_and_key
    scripted = engine(app, "plain", ["[]"])
    schema = {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 2}
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
    response = await chat(app, key, "plain", response_format=fmt)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "response_format.json_schema.schema"
    assert scripted.generations == 0
