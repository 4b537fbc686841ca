"""The chat road for upstream models: same admission, same run surface, the generation done elsewhere.

`start_remote_chat` checks the request's output options with the embedded engine's own rules
(service/chat_plan.py: response_format, tools, reasoning; their 400s cost no slot), counts the prompt
(upstream /tokenize, the model's tokenizer, or an estimate), admits the request exactly as for the
embedded engine (tiers, limits, a slot of the upstreams' summed concurrency), then opens the upstream
request, so upstream refusals and failover happen before our first byte and are real HTTP statuses.
response_format and tools go to the upstream as sent (legacy `functions` as `tools`: current servers
only know those), and the answer is held to them at the end (UpstreamOutput.check).

The `RemoteChatRun` it returns has ChatRun's surface (`events()`, `finish()`, `usage`, `headers`,
...), so the chat and Responses routers, `complete()` and the batch runner use it unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio

from tiergate.engines.base import ModelSpec
from tiergate.engines.tier_mapping import CLIENT_PRIORITY_FIELDS
from tiergate.engines.token_estimate import tokens_for_chars
from tiergate.engines.upstream import UpstreamEngine, UpstreamReply
from tiergate.errors import BadGateway
from tiergate.generation.output import OutputDelta
from tiergate.generation.upstream_output import GarbledAnswer, UpstreamOutput
from tiergate.schemas.chat import ChatCompletionRequest
from tiergate.service.chat_plan import asked_max_tokens, plan_output
from tiergate.service.run import AdmittedRun
from tiergate.service.runtime import Runtime
from tiergate.service.usage import Usage
from tiergate.tiers.admission import Who
from tiergate.tiers.limits import Cost

# Our fields, or the client's attempts to steer the engine: the gateway sets these per upstream.
_NOT_FORWARDED = {"model", "stream", "stream_options", *CLIENT_PRIORITY_FIELDS}
# The deprecated fields go as tools and tool_choice (vLLM and llama-server dropped `functions`).
_LEGACY = {"functions", "function_call"}


@dataclass(kw_only=True)
class RemoteChatRun(AdmittedRun):
    """One admitted chat request answered by an upstream; see ChatRun for the contract."""

    reply: UpstreamReply
    counted_prompt_tokens: int
    output: UpstreamOutput = field(init=False)

    def __post_init__(self) -> None:
        self.usage = Usage(prompt_tokens=self.counted_prompt_tokens, queue_time=self.admitted.queue_time)
        self.output = UpstreamOutput(self.plan)

    @property
    def fingerprint(self) -> str:
        """The only place a client can see that an upstream served it, and of which kind."""
        return f"fp_upstream_{self.reply.kind.replace('-', '_')}"

    async def events(self) -> AsyncIterator[OutputDelta]:
        """Content and reasoning as the upstream sends them; tool calls whole, at the end. Then the
        answer is checked against the request (JSON, schema, tool calls): a broken promise raises the
        400 GroqCloud gives, after everything else was sent (as for the embedded engine)."""
        clock = self.runtime.clock
        reply, output = self.reply, self.output
        first_at: float | None = None
        try:
            if reply.body is not None:
                first_at = reply.headers_at
                piece = output.read_body(reply.body)
                if piece:
                    yield piece
            else:
                async for batch in reply.chunk_batches():
                    piece = _merged([output.read_chunk(chunk) for chunk in batch])
                    if piece and first_at is None:
                        first_at = clock.monotonic()
                        self._observe_ttft(first_at)
                    if piece:
                        yield piece
                if output.finish_reason is None:
                    # [DONE] with no finish_reason: cut short (llama-cpp-python's server does this
                    # to a stream when any other request arrives, a health check included).
                    reply.broke("stream ended without a finish_reason")
                    raise BadGateway("The upstream's stream broke off before the answer was complete.")
                if piece := output.flush():
                    yield piece
            self.finish_reason = output.finish_reason or "stop"
            if output.tool_calls:
                self.finish_reason = self._tool_finish_reason()
            output.check()
        except GarbledAnswer:
            reply.broke("garbled answer")
            raise BadGateway(f"The upstream for `{self.model}` answered with garbage.") from None
        finally:
            end = clock.monotonic()
            # prompt_time: request sent -> first output (all of it, for a non-streaming upstream).
            self.usage.prompt_time = (first_at or end) - reply.sent_at
            self.usage.completion_time = end - (first_at or end)
            self._settle_counts()
            with anyio.CancelScope(shield=True):
                await self.finish()

    def _settle_counts(self) -> None:
        output, usage = self.output, self.usage
        if output.prompt_tokens is not None:
            usage.prompt_tokens = output.prompt_tokens
        if output.completion_tokens is not None:
            usage.completion_tokens = output.completion_tokens
        else:
            # A non-streamed answer without usage: estimated from its characters.
            usage.completion_tokens = output.chunks_with_output or tokens_for_chars(output.completion_chars())
        usage.reasoning_tokens = output.reasoning_tokens

    async def _release(self) -> None:
        """Close the upstream answer (an unread stream: hang up, so the upstream stops generating)."""
        await self.reply.close()


def _merged(pieces: list[OutputDelta]) -> OutputDelta:
    """Chunks that arrived in one network read go out as one: no waiting, fewer writes to the client."""
    if len(pieces) == 1:
        return pieces[0]
    return OutputDelta(
        "".join(p.content for p in pieces),
        "".join(p.reasoning for p in pieces),
        tuple(call for p in pieces for call in p.tool_calls),
    )


def forward_body(request: ChatCompletionRequest) -> dict[str, Any]:
    """The client's request as the upstream gets it: what was set, minus the fields the gateway owns."""
    body = request.model_dump(exclude_none=True, by_alias=True, exclude=_NOT_FORWARDED | _LEGACY)
    if request.functions:
        body["tools"] = [
            {"type": "function", "function": fn.model_dump(exclude_none=True, by_alias=True)}
            for fn in request.functions
        ]
        choice = request.function_call
        if isinstance(choice, str):
            body["tool_choice"] = choice
        elif choice is not None:
            body["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        body["parallel_tool_calls"] = False  # function_call holds one call
    return body


async def start_remote_chat(
    runtime: Runtime,
    request: ChatCompletionRequest,
    spec: ModelSpec,
    engine: UpstreamEngine,
    who: Who,
    started_at: float,
    tiers: tuple[str, ...],
) -> RemoteChatRun:
    plan, _ = plan_output(request, spec)  # the grammar it builds goes unused: the upstream constrains
    if tiers == ("flex",) and (runtime.schedulers[spec.id].flex_is_hopeless() or engine.saturated()):
        raise runtime.admission.flex_refusal()
    asked = asked_max_tokens(request, spec)
    body = forward_body(request)
    prompt_tokens = await engine.count_prompt(body)
    cost = Cost(requests=1, tokens=prompt_tokens + (asked or spec.max_completion_tokens))
    admitted = await runtime.admission.admit(who, tiers, cost)
    try:
        if admitted.tier == "flex" and engine.saturated():
            raise runtime.admission.flex_refusal()
        reply = await engine.open(body, admitted.tier, stream=bool(request.stream))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await runtime.admission.withdraw(who, admitted)
        raise
    return RemoteChatRun(
        runtime=runtime,
        who=who,
        spec=spec,
        admitted=admitted,
        reply=reply,
        started_at=started_at,
        counted_prompt_tokens=prompt_tokens,
        plan=plan,
    )
