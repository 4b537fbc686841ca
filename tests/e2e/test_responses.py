"""The Responses API through the openai SDK: plain, streaming, a function tool, json_schema, 400s."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from openai.types.responses import Response

from tests.conftest import LiveServer

MODEL = "qwen2.5-coder-0.5b-instruct"


def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base, api_key=server.api_key, max_retries=0, timeout=300)


def test_plain_response_has_output_text_and_usage(server: LiveServer) -> None:
    response = client(server).responses.create(
        model=MODEL, input="Say hello.", instructions="Be brief.", max_output_tokens=12, temperature=0
    )
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.service_tier == "default"  # auto ran on on_demand, "default" in Responses terms
    usage = response.usage
    assert usage is not None and usage.input_tokens > 0 and 0 < usage.output_tokens <= 12
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    Response.model_validate(response.model_dump())


def test_streaming_response_emits_the_sdk_event_sequence(server: LiveServer) -> None:
    stream = client(server).responses.create(
        model=MODEL, input="Count to three.", max_output_tokens=12, stream=True
    )
    kinds = []
    text = []
    final = None
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text.append(event.delta)
        if event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert final is not None and final.output_text == "".join(text)


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_function_tool_call_and_its_output_round_trip(server: LiveServer) -> None:
    tool = WEATHER_TOOL
    oai = client(server)
    first = oai.responses.create(
        model=MODEL,
        input="What's the weather in Rome?",
        tools=[tool],
        tool_choice="required",
        max_output_tokens=40,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments)["city"]
    second = oai.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "What's the weather in Rome?"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"sky": "rainy"}'},
        ],
        tools=[tool],
        tool_choice="none",
        max_output_tokens=24,
        temperature=0,
    )
    assert second.output_text.strip()


def test_streaming_two_parallel_function_calls_completes_with_both(server: LiveServer) -> None:
    # The newline the grammar writes between two calls once opened an empty message item that the
    # final output dropped, and the stream died with a RuntimeError before response.completed.
    stream = client(server).responses.create(
        model=MODEL,
        input="What's the weather in Paris and in Rome?",
        tools=[WEATHER_TOOL],
        tool_choice="required",
        parallel_tool_calls=True,
        max_output_tokens=80,
        temperature=0,
        stream=True,
    )
    events = list(stream)
    assert events[-1].type == "response.completed"
    final = events[-1].response
    calls = [item for item in final.output if item.type == "function_call"]
    assert len(calls) >= 2, "the prompt asks for two calls"
    assert [item.type for item in final.output] == ["function_call"] * len(calls)
    assert not [e for e in events if e.type.startswith("response.output_text")]
    added = {e.output_index: e.item.id for e in events if e.type == "response.output_item.added"}
    done = {e.output_index: e.item.id for e in events if e.type == "response.output_item.done"}
    assert added == done == {index: item.id for index, item in enumerate(final.output)}
    for call in calls:
        assert json.loads(call.arguments)["city"]


def test_json_schema_text_format_validates(server: LiveServer) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "legs": {"type": "integer"}},
        "required": ["name", "legs"],
        "additionalProperties": False,
    }
    response = client(server).responses.create(
        model=MODEL,
        input="Describe a spider.",
        text={"format": {"type": "json_schema", "name": "animal", "schema": schema, "strict": True}},
        max_output_tokens=40,
        temperature=0,
    )
    jsonschema.validate(json.loads(response.output_text), schema)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_x"),
        ("store", True),
        ("truncation", "auto"),
        ("include", ["x"]),
        ("safety_identifier", "u1"),
        ("prompt_cache_key", "k"),
    ],
)
def test_unsupported_fields_are_a_400_naming_them(server: LiveServer, field: str, value: object) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(server).responses.create(
            model=MODEL, input="hi", max_output_tokens=4, extra_body={field: value}
        )
    assert info.value.body["param"] == field  # type: ignore[index]
    # Refused while parsing, and still with the rate-limit headers every response carries.
    assert "x-ratelimit-limit-requests" in info.value.response.headers


def test_an_empty_input_is_a_400_naming_input(server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(server).responses.create(model=MODEL, input=[], max_output_tokens=4)
    assert info.value.body["param"] == "input"  # type: ignore[index]


def test_a_400_from_the_chat_road_names_the_responses_field(server: LiveServer) -> None:
    # Checked on the chat road (over the model's limit), reported under the Responses API's own name.
    with pytest.raises(openai.BadRequestError) as info:
        client(server).responses.create(model=MODEL, input="hi", max_output_tokens=10_000_000)
    assert info.value.body["param"] == "max_output_tokens"  # type: ignore[index]
    assert "max_completion_tokens" not in info.value.body["message"]  # type: ignore[index]
