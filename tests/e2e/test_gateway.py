"""Gateway mode in front of real servers on loopback, through the groq SDK: llama-cpp-python's own
OpenAI-compatible server, and a second tiergate (the shared `server` fixture) as upstreams.

Chat, streaming and tools pass through and come back in our shape; the Batch API and rate limits work
unchanged in front of an upstream; /models lists the upstream models.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import groq
import pytest

from tests.conftest import LiveServer, start_server
from tests.e2e import batch_helpers
from tests.e2e.gateway_helpers import MODEL, LlamaServer, gguf_path

HI = [{"role": "user", "content": "Say hi."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def llama_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    live = LlamaServer(gguf_path(models_dir), tmp_path_factory.mktemp("llama") / "llama.log").start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def gateway(
    server: LiveServer, llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("gateway")
    config = data_dir / "gateway.toml"
    config.write_text(
        f"""
[limits."limited"]
rpm = 2

[[models]]
id = "via-llama"
engine = "upstream"
[[models.options.upstreams]]
base_url = "{llama_server.base_url}"
model = "{MODEL}"
max_concurrency = 2

[[models]]
id = "via-tiergate"
engine = "upstream"
[[models.options.upstreams]]
base_url = "{server.openai_base}"
kind = "tiergate"
model = "{MODEL}"
api_key_env = "UPSTREAM_TIERGATE_KEY"
max_concurrency = 2

[[models]]
id = "limited"
engine = "upstream"
[[models.options.upstreams]]
base_url = "{llama_server.base_url}"
model = "{MODEL}"

[[models]]
id = "via-llama-tokenizer"
engine = "upstream"
[models.options]
tokenizer = "{llama_server.gguf}"
[[models.options.upstreams]]
base_url = "{llama_server.base_url}"
model = "{MODEL}"
"""
    )
    live = start_server(
        data_dir / "data",
        "--config",
        str(config),
        "--upstream",
        f"cli-llama={llama_server.base_url}@{MODEL}",
        env={"UPSTREAM_TIERGATE_KEY": server.api_key},
    )
    yield live
    live.stop()


def _client(gateway: LiveServer, api_key: str | None = None) -> groq.Groq:
    return groq.Groq(base_url=gateway.root, api_key=api_key or gateway.api_key, max_retries=0, timeout=60)


@pytest.mark.parametrize("model", ["via-llama", "via-tiergate", "cli-llama"])
def test_chat_through_the_gateway_comes_back_in_our_shape(gateway: LiveServer, model: str) -> None:
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model=model, messages=HI, max_tokens=8, temperature=0
    )
    completion = raw.parse()
    assert completion.model == model
    assert completion.id.startswith("chatcmpl-")
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.service_tier == "on_demand"
    assert completion.system_fingerprint.startswith("fp_upstream_")
    assert 0 < completion.usage.completion_tokens <= 8
    assert completion.usage.prompt_tokens > 0
    assert raw.headers["x-request-id"] == completion.x_groq.id
    assert "x-ratelimit-remaining-tokens" in raw.headers


@pytest.mark.parametrize("model", ["via-llama", "via-tiergate"])
def test_streaming_through_the_gateway(gateway: LiveServer, model: str) -> None:
    stream = _client(gateway).chat.completions.create(
        model=model, messages=HI, max_tokens=8, temperature=0, stream=True
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    usage = chunks[-1].x_groq.usage
    assert usage is not None and 0 < usage.completion_tokens <= 8
    assert len({chunk.id for chunk in chunks}) == 1


def test_tool_calls_come_through_the_gateway(gateway: LiveServer) -> None:
    completion = _client(gateway).chat.completions.create(
        model="via-tiergate",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert call.id


def test_streamed_tool_calls_arrive_whole(gateway: LiveServer) -> None:
    stream = _client(gateway).chat.completions.create(
        model="via-tiergate",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=60,
        temperature=0,
        stream=True,
    )
    calls = [call for chunk in stream if chunk.choices for call in chunk.choices[0].delta.tool_calls or []]
    assert len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert "city" in json.loads(calls[0].function.arguments)


def test_models_lists_the_upstream_models(gateway: LiveServer) -> None:
    ids = {model.id for model in _client(gateway).models.list().data}
    assert ids == {"via-llama", "via-tiergate", "limited", "cli-llama", "via-llama-tokenizer"}


def test_rate_limits_hold_in_front_of_an_upstream(gateway: LiveServer) -> None:
    api = _client(gateway, gateway.new_key())
    for _ in range(2):
        api.chat.completions.create(model="limited", messages=HI, max_tokens=1)
    with pytest.raises(groq.RateLimitError) as refused:
        api.chat.completions.create(model="limited", messages=HI, max_tokens=1)
    assert "`limited`" in refused.value.body["error"]["message"]
    assert int(refused.value.response.headers["retry-after"]) >= 1


def test_a_batch_runs_through_the_gateway(gateway: LiveServer) -> None:
    api = _client(gateway)
    lines = [
        batch_helpers.chat_line(
            f"line-{n}", body={"model": "via-llama", "messages": HI, "max_tokens": 2, "temperature": 0}
        )
        for n in range(3)
    ]
    batch = batch_helpers.wait_for(api, batch_helpers.submit(api, lines), timeout=120)
    assert batch.status == "completed"
    outputs = batch_helpers.lines_of(api, batch.output_file_id)
    assert sorted(line["custom_id"] for line in outputs) == ["line-0", "line-1", "line-2"]
    for line in outputs:
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200
        assert body["model"] == "via-llama" and body["service_tier"] == "batch"
        assert body["choices"][0]["message"]["content"]


def test_prompt_tokens_are_reserved_exactly_with_the_models_own_tokenizer(gateway: LiveServer) -> None:
    # llama-cpp-python's server has no /tokenize the gateway knows: without options.tokenizer this
    # prompt would be estimated at 51 tokens (chars / 4 + 4 per message + 3); it has 58.
    messages = [
        {"role": "system", "content": "You are terse. Answer in one word, in lowercase, no punctuation."},
        {"role": "user", "content": "What colour is the sky on a clear day? 天空是什么颜色?"},
        {"role": "assistant", "content": "blue"},
        {"role": "user", "content": "And grass?"},
    ]
    raw = _client(gateway).chat.completions.with_raw_response.create(
        model="via-llama-tokenizer", messages=messages, max_tokens=4, temperature=0
    )
    completion = raw.parse()
    # The tokens admission reserved (the model is used by no other test): prompt + max_tokens.
    reserved = int(raw.headers["x-ratelimit-limit-tokens"]) - int(raw.headers["x-ratelimit-remaining-tokens"])
    assert reserved - 4 == completion.usage.prompt_tokens  # as llama-cpp counted it upstream
    assert completion.usage.prompt_tokens != 51


def test_json_mode_passes_through_to_llama_server_and_comes_back_valid(gateway: LiveServer) -> None:
    completion = _client(gateway).chat.completions.create(
        model="via-llama",
        messages=[{"role": "user", "content": 'Reply with the JSON object {"ok": true} and nothing else.'}],
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_a_strict_schema_outside_the_subset_is_refused_for_an_upstream_model(gateway: LiveServer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}, "required": ["a"]}
    with pytest.raises(groq.BadRequestError) as refused:
        _client(gateway).chat.completions.create(
            model="via-llama",
            messages=HI,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "strict": True, "schema": schema},
            },
        )
    assert refused.value.body["error"]["param"] == "response_format.json_schema.schema"
