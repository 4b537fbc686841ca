"""The chat request road: resolve, count, admit, generate, settle. HTTP and the batch runner both call it.

`start_chat` does everything that can fail before the first byte (404, 400, 403, 429, 498), so those
are real HTTP statuses. It returns a ChatRun whose `events()` yields text as the engine produces it and
whose `finish()` frees the slot and settles the limits exactly once, also when the client leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson

from tiergate.auth import Principal
from tiergate.engines.audio_models import AUDIO_ENGINES
from tiergate.engines.base import Engine, ModelSpec, PreparedPrompt, SamplingParams
from tiergate.engines.upstream import UpstreamEngine
from tiergate.errors import APIError, EngineFailure, InvalidRequest, ServiceUnavailable
from tiergate.generation.output import OutputDelta, OutputReader
from tiergate.generation.stops import StopMatch, StopMatcher
from tiergate.schemas.chat import ChatCompletionRequest, Message
from tiergate.service.chat_plan import asked_max_tokens, fit_to_prompt, plan_output
from tiergate.service.chat_remote import RemoteChatRun, start_remote_chat
from tiergate.service.run import AdmittedRun
from tiergate.service.runtime import Runtime
from tiergate.service.usage import Usage
from tiergate.tiers.admission import Who
from tiergate.tiers.limits import Cost
from tiergate.tiers.policy import candidate_tiers

# GroqCloud converts temperature 0 to 1e-8; for a sampler that is greedy decoding.
_MIN_TEMPERATURE = 1e-8


@dataclass(kw_only=True)
class ChatRun(AdmittedRun):
    """One admitted chat request, generating on its slot."""

    engine: Engine
    prompt: PreparedPrompt
    params: SamplingParams
    stops: list[str]
    output: OutputReader = field(init=False)

    def __post_init__(self) -> None:
        self.usage = Usage(prompt_tokens=len(self.prompt.tokens), queue_time=self.admitted.queue_time)
        self.output = OutputReader(self.plan)

    @property
    def fingerprint(self) -> str:
        return getattr(self.engine, "fingerprint", "fp_0000000000")

    async def events(self) -> AsyncIterator[OutputDelta]:
        """Yield content, reasoning and tool calls as they are produced; stop strings never appear.

        At the end the output is checked against what the request asked for (JSON, schema, tool
        names and arguments): a broken promise raises the 400 GroqCloud gives, after the slot is freed.
        """
        clock = self.runtime.clock
        matcher = StopMatcher(self.stops)
        reader = self.output
        generation_start = clock.monotonic()
        first_token_at: float | None = None
        lease = self.admitted.lease
        speed = self.runtime.speed(self.model)
        stream = self.engine.generate(self.prompt, self.params, lease.slot)
        try:
            async for delta in stream:
                left = speed.remaining(
                    0, self.params.max_tokens - self.usage.completion_tokens - delta.tokens
                )
                lease.expected_end = None if left is None else clock.monotonic() + left
                if first_token_at is None:
                    first_token_at = clock.monotonic()
                    self.usage.prompt_time = first_token_at - generation_start
                    self._observe_ttft(clock.monotonic())
                self.usage.completion_tokens += delta.tokens
                out = matcher.feed(delta.text)
                piece = reader.feed(out.text if isinstance(out, StopMatch) else out)
                reader.count(delta.tokens)  # after feeding: the token that opens <think> is reasoning
                if piece:
                    yield piece
                if isinstance(out, StopMatch):
                    self.finish_reason = "stop"
                    break
                if delta.finish_reason is not None:
                    self.finish_reason = delta.finish_reason
            else:
                tail = matcher.flush()
                if tail and (piece := reader.feed(tail)):
                    yield piece
            if piece := reader.flush():
                yield piece
            self.usage.reasoning_tokens = reader.reasoning_tokens
            if reader.tool_calls:
                self.finish_reason = self._tool_finish_reason()
            reader.check()
        except APIError:
            raise
        except Exception as exc:
            raise EngineFailure("The engine failed while generating; please retry.") from exc
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            end = clock.monotonic()
            if first_token_at is None:
                self.usage.prompt_time = end - generation_start
            else:
                self.usage.completion_time = end - first_token_at
            if self.finish_reason is None:
                self.finish_reason = "stop"
            with anyio.CancelScope(shield=True):
                await self.finish()

    async def _release(self) -> None:
        """A run that got to an end teaches the scheduler how fast this model serves."""
        usage = self.usage
        if self.finish_reason is not None:
            self.runtime.speed(self.model).observe(
                usage.prompt_tokens, usage.prompt_time, usage.completion_tokens, usage.completion_time
            )


# What start_chat returns: the embedded engine's run or an upstream's; both have the same surface.
AnyChatRun = ChatRun | RemoteChatRun


async def complete(run: AnyChatRun) -> dict[str, Any]:
    """Generate the whole answer and return the chat.completion body (HTTP and batch lines share it)."""
    async for _ in run.events():
        pass
    return completion_body(run)


def completion_body(run: AnyChatRun) -> dict[str, Any]:
    return {
        "id": run.completion_id,
        "object": "chat.completion",
        "created": run.created,
        "model": run.model,
        "choices": [
            {
                "index": 0,
                "message": message_body(run),
                "logprobs": None,
                "finish_reason": run.finish_reason,
            }
        ],
        "usage": run.usage.as_dict(),
        "usage_breakdown": None,
        "system_fingerprint": run.fingerprint,
        "x_groq": {"id": run.request_id},
        "service_tier": run.tier,
    }


def message_body(run: AnyChatRun) -> dict[str, Any]:
    """The assistant message: content, then reasoning and tool calls only when there are some."""
    output = run.output
    message: dict[str, Any] = {"role": "assistant", "content": output.message_content()}
    reasoning = output.message_reasoning()
    if reasoning is not None:
        message["reasoning"] = reasoning
    if output.tool_calls:
        if run.plan.legacy_functions:
            first = output.tool_calls[0]
            message["function_call"] = {"name": first.name, "arguments": first.arguments}
        else:
            message["tool_calls"] = [call.as_dict() for call in output.tool_calls]
    return message


def template_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Messages as chat templates expect them (plain text content, tool-call arguments as objects)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = {"developer": "system", "function": "tool"}.get(message.role, message.role)
        item: dict[str, Any] = {"role": role, "content": message.text()}
        if message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.function.name,
                        "arguments": _arguments(call.function.arguments),
                    },
                }
                for call in message.tool_calls
            ]
        if message.tool_call_id:
            item["tool_call_id"] = message.tool_call_id
        if message.role == "function" and message.name:
            item["name"] = message.name
        out.append(item)
    return out


def _arguments(raw: str) -> Any:
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return raw


async def limit_headers_for(runtime: Runtime, principal: Principal, model: object) -> dict[str, str]:
    """Rate-limit headers for a request refused before it could be parsed (none if the model is unknown)."""
    if not isinstance(model, str) or model not in runtime.registry:
        return {}
    spec = runtime.registry.resolve(model)
    who = Who(principal.org_id, principal.org_name, principal.project_id, spec.id)
    return await runtime.admission.headers(who, "on_demand")


async def start_chat(
    runtime: Runtime,
    principal: Principal,
    request: ChatCompletionRequest,
    *,
    internal_tier: str | None = None,
) -> AnyChatRun:
    """Admit a chat request. `internal_tier="batch"` is how the batch runner asks for idle slots only;
    clients cannot ask for it (service_tier "batch" is refused on synchronous requests).
    """
    started_at = runtime.clock.monotonic()
    spec = runtime.registry.resolve(request.model)
    if spec.engine in AUDIO_ENGINES:
        raise InvalidRequest(
            f"The model `{spec.id}` does not support chat completions.",
            param="model",
            code="model_not_supported",
        )
    engine = runtime.engines.get(spec.id)
    if engine is None:
        raise ServiceUnavailable(f"The model `{spec.id}` is not loaded on this server.")
    who = Who(principal.org_id, principal.org_name, principal.project_id, spec.id)
    tier = request.service_tier if request.service_tier in ("flex", "performance") else "on_demand"
    async with runtime.admission.headers_on_error(who, tier):
        if internal_tier is not None:
            tiers: tuple[str, ...] = (internal_tier,)
        else:
            tiers = candidate_tiers(request.requested_tier(), performance_entitled=principal.performance)
        if isinstance(engine, UpstreamEngine):
            return await start_remote_chat(runtime, request, spec, engine, who, started_at, tiers)
        return await _admit_chat(runtime, request, spec, engine, who, started_at, tiers)


async def _admit_chat(
    runtime: Runtime,
    request: ChatCompletionRequest,
    spec: ModelSpec,
    engine: Engine,
    who: Who,
    started_at: float,
    tiers: tuple[str, ...],
) -> ChatRun:
    plan, tools = plan_output(request, spec)
    if tiers == ("flex",) and runtime.schedulers[spec.id].flex_is_hopeless():
        # Fail fast, before templating and counting tokens: the answer is 498 whatever they say.
        raise runtime.admission.flex_refusal()
    prefill = request.messages[-1].role == "assistant"
    try:
        prompt = await asyncio.to_thread(engine.prepare, template_messages(request.messages), tools, prefill)
    except APIError:
        raise
    except Exception as exc:
        raise InvalidRequest(
            "The messages could not be rendered with the model's chat template.", param="messages"
        ) from exc

    prompt_tokens = len(prompt.tokens)
    window = spec.context_window
    if prompt_tokens >= window:
        raise InvalidRequest(
            f"Please reduce the length of the messages or completion. The prompt has {prompt_tokens} "
            f"tokens, but the model `{spec.id}` has a context window of {window} tokens.",
            param="messages",
            code="context_length_exceeded",
        )
    room = min(window - prompt_tokens, spec.max_completion_tokens)
    asked = asked_max_tokens(request, spec)
    max_tokens = min(asked, room) if asked is not None else room

    # Only the templated prompt shows whether the think block is ahead, open or past.
    plan = fit_to_prompt(plan, prompt.text, request.messages[-1].text() if prefill else None)
    temperature = 1.0 if request.temperature is None else max(request.temperature, _MIN_TEMPERATURE)
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        seed=request.seed,
        grammar=plan.grammar,
    )
    cost = Cost(requests=1, tokens=prompt_tokens + max_tokens)
    admitted = await runtime.admission.admit(who, tiers, cost)
    left = runtime.speed(spec.id).remaining(prompt_tokens, max_tokens)
    admitted.lease.expected_end = None if left is None else runtime.clock.monotonic() + left
    return ChatRun(
        runtime=runtime,
        who=who,
        spec=spec,
        engine=engine,
        prompt=prompt,
        params=params,
        stops=request.stop_sequences,
        admitted=admitted,
        started_at=started_at,
        plan=plan,
    )
