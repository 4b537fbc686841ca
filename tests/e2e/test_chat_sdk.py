"""Chat completions through the official groq and openai SDKs against a live server and the real model."""

from __future__ import annotations

import asyncio

import groq
import openai
import pytest
from groq.types.chat import ChatCompletion as GroqChatCompletion

from tests.conftest import LiveServer

PROMPT = [{"role": "user", "content": "Name three colors of the rainbow."}]


def groq_client(server: LiveServer, **kw: object) -> groq.Groq:
    return groq.Groq(base_url=server.root, api_key=server.api_key, max_retries=0, **kw)


def test_groq_sdk_chat_returns_real_text_with_groq_shaped_usage(server: LiveServer) -> None:
    client = groq_client(server)
    completion = client.chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct", messages=PROMPT, max_completion_tokens=24, temperature=0
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "qwen2.5-coder-0.5b-instruct"
    assert completion.service_tier == "on_demand"
    assert completion.system_fingerprint and completion.system_fingerprint.startswith("fp_")
    assert completion.x_groq is not None and completion.x_groq.id.startswith("req_")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 5
    assert 0 < usage.completion_tokens <= 24
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.queue_time is not None and usage.queue_time >= 0
    assert usage.prompt_time is not None and usage.prompt_time > 0
    assert usage.completion_time is not None and usage.completion_time >= 0
    assert usage.total_time == pytest.approx(usage.prompt_time + usage.completion_time, abs=2e-6)
    # Schema drift: the body re-parses with the SDK's own class.
    GroqChatCompletion.model_validate(completion.model_dump())


def test_request_id_header_matches_x_groq_id(server: LiveServer) -> None:
    raw = groq_client(server).chat.completions.with_raw_response.create(
        model="qwen2.5-coder-0.5b-instruct", messages=PROMPT, max_completion_tokens=4
    )
    assert raw.headers["x-request-id"] == raw.parse().x_groq.id


def test_max_tokens_cuts_generation_with_finish_reason_length(server: LiveServer) -> None:
    completion = groq_client(server).chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct",
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5


def test_same_seed_and_params_give_the_same_text(server: LiveServer) -> None:
    client = groq_client(server)
    args = dict(
        model="qwen2.5-coder-0.5b-instruct",
        messages=[{"role": "user", "content": "Invent a name for a cat."}],
        max_completion_tokens=16,
        temperature=1.0,
        top_p=0.95,
    )
    first = client.chat.completions.create(seed=1234, **args).choices[0].message.content
    second = client.chat.completions.create(seed=1234, **args).choices[0].message.content
    assert first == second
    others = {client.chat.completions.create(seed=s, **args).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {first}) > 1, "different seeds should be able to give different text"


def test_groq_async_client(server: LiveServer) -> None:
    async def go() -> list[str]:
        client = groq.AsyncGroq(base_url=server.root, api_key=server.api_key, max_retries=0)
        results = await asyncio.gather(
            *[
                client.chat.completions.create(
                    model="qwen2.5-coder-0.5b-instruct", messages=PROMPT, max_completion_tokens=8
                )
                for _ in range(3)
            ]
        )
        return [r.choices[0].message.content or "" for r in results]

    texts = asyncio.run(go())
    assert len(texts) == 3 and all(t.strip() for t in texts)


def test_groq_streaming_frames_role_content_finish_and_usage(server: LiveServer) -> None:
    stream = groq_client(server).chat.completions.create(
        model="qwen2.5-coder-0.5b-instruct",
        messages=PROMPT,
        max_completion_tokens=20,
        stream=True,
        # groq 1.7 has no `stream_options` argument; the API accepts it (OpenAI-compatible).
        extra_body={"stream_options": {"include_usage": True}},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].x_groq is not None and chunks[0].x_groq.id.startswith("req_")
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1, "tokens must stream"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1
    final = finals[0]
    assert final.x_groq is not None and final.x_groq.usage is not None
    assert final.x_groq.usage.completion_tokens > 0
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.completion_tokens == final.x_groq.usage.completion_tokens
    assert {c.id for c in chunks} == {chunks[0].id}


def test_openai_sdk_works_on_both_prefixes(server: LiveServer) -> None:
    for base in (server.openai_base, f"{server.root}/v1"):
        client = openai.OpenAI(base_url=base, api_key=server.api_key, max_retries=0)
        completion = client.chat.completions.create(
            model="qwen2.5-coder-0.5b-instruct", messages=PROMPT, max_completion_tokens=8
        )
        assert completion.choices[0].message.content
        streamed = client.chat.completions.create(
            model="qwen2.5-coder-0.5b-instruct", messages=PROMPT, max_completion_tokens=8, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).strip()


def _stop_candidate(text: str) -> str:
    """A stop string from the middle of `text` long enough to span several tokens."""
    words = text.split()
    assert len(words) >= 6, text
    return " ".join(words[3:5])


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences_never_appear_even_across_tokens(server: LiveServer, stream: bool) -> None:
    client = groq_client(server)
    args = dict(
        model="qwen2.5-coder-0.5b-instruct",
        messages=[{"role": "user", "content": "Describe the sea in two sentences."}],
        max_completion_tokens=40,
        temperature=0,
        seed=7,
    )
    full = client.chat.completions.create(**args).choices[0].message.content or ""
    stop = _stop_candidate(full)
    expected = full[: full.index(stop)]
    if stream:
        chunks = list(client.chat.completions.create(stop=[stop, "@@@"], stream=True, **args))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        completion = client.chat.completions.create(stop=stop, **args)
        text = completion.choices[0].message.content or ""
        finish = completion.choices[0].finish_reason
    assert stop not in text
    assert text == expected
    assert finish == "stop"


def test_models_list_and_retrieve(server: LiveServer) -> None:
    client = groq_client(server)
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "qwen2.5-coder-0.5b-instruct" in ids
    model = client.models.retrieve("qwen2.5-coder-0.5b-instruct")
    assert model.id == "qwen2.5-coder-0.5b-instruct"
    assert model.object == "model"
    raw = client.models.with_raw_response.retrieve("qwen2.5-coder-0.5b-instruct").http_response.json()
    assert raw["context_window"] > 0 and raw["active"] is True and "max_completion_tokens" in raw
    # An id with a slash (GroqCloud has `openai/gpt-oss-20b`, `meta-llama/...`): the alias resolves.
    slashed = client.models.retrieve("qwen/qwen2.5-coder-0.5b-instruct")
    assert slashed.id == "qwen2.5-coder-0.5b-instruct"
    reply = client.chat.completions.create(
        model="qwen/qwen2.5-coder-0.5b-instruct", messages=PROMPT, max_tokens=1
    )
    assert reply.model == "qwen2.5-coder-0.5b-instruct"


def test_unknown_model_is_404_model_not_found(server: LiveServer) -> None:
    client = groq_client(server)
    with pytest.raises(groq.NotFoundError) as info:
        client.chat.completions.create(model="meta-llama/no-such-model", messages=PROMPT)
    error = info.value.body["error"]
    assert error["code"] == "model_not_found"
    assert "meta-llama/no-such-model" in error["message"]
    with pytest.raises(groq.NotFoundError):
        client.models.retrieve("openai/no-such-model")


def test_performance_tier_is_refused_for_a_project_not_entitled(server: LiveServer) -> None:
    with pytest.raises(groq.PermissionDeniedError) as info:
        groq_client(server).chat.completions.create(
            model="qwen2.5-coder-0.5b-instruct", messages=PROMPT, service_tier="performance"
        )
    assert info.value.status_code == 403
    assert info.value.body["error"]["param"] == "service_tier"
