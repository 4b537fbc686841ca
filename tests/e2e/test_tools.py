"""Tool use against the real model: forced calls, a full round trip, streaming, deprecated functions."""

from __future__ import annotations

import json

import groq
import jsonschema
import openai
import pytest

from tests.conftest import LiveServer

MODEL = "qwen2.5-coder-0.5b-instruct"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameters": WEATHER,
            "strict": True,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "Add two integers",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    },
]
ASK = [{"role": "user", "content": "What's the weather in Paris?"}]


def client(server: LiveServer) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, timeout=300)


REQUIRED_PROMPTS = [
    "What's the weather in Paris?",
    "Add 17 and 25.",
    "Is it raining in Tokyo right now? Use fahrenheit.",
    "hello",
    "What is 3 plus 4, and how warm is it in Oslo?",
    "Tell me a joke about databases.",
]


@pytest.mark.parametrize("index", range(len(REQUIRED_PROMPTS)))
def test_required_tool_choice_always_calls_with_valid_arguments(server: LiveServer, index: int) -> None:
    # Whatever the prompt asks (even a greeting or a joke), `required` means calls and nothing else.
    completion = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": REQUIRED_PROMPTS[index]}],
        tools=TOOLS,
        tool_choice="required",
        max_completion_tokens=80,
        temperature=0.7,
        seed=index,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    assert choice.message.content is None
    for call in choice.message.tool_calls:
        assert call.id.startswith("call_") and call.type == "function"
        schema = next(
            t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == call.function.name
        )
        jsonschema.validate(json.loads(call.function.arguments), schema)


def test_streamed_parallel_calls_carry_no_whitespace_content(server: LiveServer) -> None:
    # The grammar writes a newline between two calls; it is layout, never a content delta.
    stream = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What's the weather in Paris and in Rome?"}],
        tools=TOOLS[:1],
        tool_choice="required",
        parallel_tool_calls=True,
        max_completion_tokens=80,
        temperature=0,
        stream=True,
    )
    contents, calls = [], []
    for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if delta is None:
            continue
        if delta.content:
            contents.append(delta.content)
        calls.extend(delta.tool_calls or [])
    assert len(calls) >= 2, "the prompt asks for two calls"
    assert contents == [], contents
    assert [call.index for call in calls] == list(range(len(calls)))


def test_full_tool_round_trip_uses_the_result(server: LiveServer) -> None:
    groq_client = client(server)
    first = groq_client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_completion_tokens=40,
        temperature=0,
    )
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"]
    messages = [
        *ASK,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 31, "sky": "sunny"})},
    ]
    second = groq_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=TOOLS,
        tool_choice="none",
        max_completion_tokens=30,
        temperature=0,
    )
    answer = second.choices[0].message.content or ""
    assert second.choices[0].finish_reason in ("stop", "length")
    assert "31" in answer or "sunny" in answer.lower()


def test_streamed_tool_calls_assemble_with_the_openai_sdk(server: LiveServer) -> None:
    oai = openai.OpenAI(base_url=server.openai_base, api_key=server.api_key, max_retries=0, timeout=300)
    with oai.chat.completions.stream(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        max_completion_tokens=60,
        temperature=0,
    ) as stream:
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("call_")
    assert isinstance(json.loads(call.function.arguments), dict)


def test_deprecated_functions_answer_with_function_call(server: LiveServer) -> None:
    completion = client(server).chat.completions.create(
        model=MODEL,
        messages=ASK,
        functions=[TOOLS[0]["function"]],  # type: ignore[list-item]
        function_call={"name": "get_weather"},
        max_completion_tokens=40,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_weather"


def test_tool_choice_naming_an_unknown_tool_is_a_400(server: LiveServer) -> None:
    with pytest.raises(groq.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=TOOLS,
            tool_choice={"type": "function", "function": {"name": "nope"}},
            max_completion_tokens=8,
        )
    assert info.value.body["error"]["param"] == "tool_choice"  # type: ignore[index]
