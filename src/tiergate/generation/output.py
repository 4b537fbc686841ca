"""From raw model text to what the API returns: reasoning, content and tool calls, then validation.

One `OutputReader` per generation sits after the stop matcher. It splits `<think>` text (reasoning
models), lifts tool calls out of the content, and at the end checks the promises the request asked
for: JSON mode parses, a schema validates, tool calls name offered tools with valid arguments. A
broken promise is a 400 carrying `failed_generation` (GroqCloud's `json_validate_failed` and
`tool_use_failed`), never silently bad output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tiergate.errors import InvalidRequest
from tiergate.generation.json_schema import validation_error
from tiergate.generation.reasoning import ReasoningSplitter, think_grammar
from tiergate.generation.tool_calls import ToolCall, ToolCallParser, ToolSpec


@dataclass(frozen=True)
class OutputPlan:
    """How one generation is constrained and read back; built from the request by the service.

    The think-block fields are only known once the prompt is templated (`service.chat_plan.fit_to_prompt`),
    which is why `grammar` is derived from them rather than stored.
    """

    # The answer's constraint (JSON mode, schema, tool calls); None: free text.
    answer_grammar: str | None = None
    # "object": content must be one JSON object; "schema": it must also validate against `schema`.
    json: str | None = None
    schema: dict[str, Any] | None = None
    tools: tuple[ToolSpec, ...] = ()
    check_tool_names: bool = True
    # raw/parsed/hidden for reasoning models; None: the model does not reason, nothing to split.
    reasoning: str | None = None
    starts_inside_think: bool = False
    # reasoning_effort "none": the model closes an empty think block at once and spends no tokens in it.
    skip_thinking: bool = False
    # An assistant prefill already began the answer, so no think block comes.
    answering: bool = False
    # The request used the deprecated `functions`: answer with message.function_call.
    legacy_functions: bool = False

    @property
    def grammar(self) -> str | None:
        """What the engine samples under: the answer's grammar, after the think block if one comes."""
        if self.reasoning is None or self.answering:
            return self.answer_grammar
        return think_grammar(
            self.answer_grammar, starts_inside=self.starts_inside_think, skip=self.skip_thinking
        )


@dataclass(frozen=True)
class OutputDelta:
    content: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.content or self.reasoning or self.tool_calls)


@dataclass
class OutputReader:
    plan: OutputPlan
    raw: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning_tokens: int = 0

    def __post_init__(self) -> None:
        splits = self.plan.reasoning in ("parsed", "hidden")
        self._splitter = (
            ReasoningSplitter(starts_inside=self.plan.starts_inside_think, answering=self.plan.answering)
            if splits
            else None
        )
        self._calls = ToolCallParser() if self.plan.tools else None
        self._was_thinking = False

    def count(self, tokens: int) -> None:
        """Attribute tokens just fed: reasoning if the think block was open before or after them.

        The empty block that reasoning_effort "none" forces is not thinking, so it counts as none.
        """
        if self.plan.skip_thinking:
            return
        if self.plan.reasoning is not None and (self._was_thinking or self._thinking()):
            self.reasoning_tokens += tokens

    def feed(self, text: str) -> OutputDelta:
        self._was_thinking = self._thinking()
        self.raw.append(text)
        if self._splitter is not None:
            split = self._splitter.feed(text)
            return self._content(split.content, split.reasoning)
        return self._content(text, "")

    def flush(self) -> OutputDelta:
        reasoning = ""
        text = ""
        if self._splitter is not None:
            split = self._splitter.flush()
            text, reasoning = split.content, split.reasoning
        delta = self._content(text, reasoning)
        if self._calls is None:
            return delta
        tail = self._calls.flush()
        self._record(tail.content, tail.calls)
        return OutputDelta(delta.content + tail.content, delta.reasoning, delta.tool_calls + tail.calls)

    def message_content(self) -> str | None:
        return message_content(self.content, self.tool_calls)

    def message_reasoning(self) -> str | None:
        if self.plan.reasoning != "parsed":
            return None
        return "".join(self.reasoning).strip() or None

    def check(self) -> None:
        """Raise the 400 GroqCloud gives when the output broke the request's contract."""
        unparsed = self._calls is not None and self._calls.failed is not None
        check_answer(
            self.plan, "".join(self.content), self.tool_calls, "".join(self.raw), unparsed_calls=unparsed
        )

    def _thinking(self) -> bool:
        if self._splitter is not None:
            return self._splitter.inside
        if self.plan.reasoning is None:
            return False
        text = "".join(self.raw)  # raw format: only short outputs reach here per token
        return "<think>" in text and "</think>" not in text

    def _content(self, text: str, reasoning: str) -> OutputDelta:
        if reasoning:
            self.reasoning.append(reasoning)
        if self.plan.reasoning == "hidden":
            reasoning = ""
        if self._calls is None:
            self.content.append(text)
            return OutputDelta(text, reasoning)
        parsed = self._calls.feed(text) if text else None
        if parsed is None:
            return OutputDelta("", reasoning)
        self._record(parsed.content, parsed.calls)
        return OutputDelta(parsed.content, reasoning, parsed.calls)

    def _record(self, content: str, calls: tuple[ToolCall, ...]) -> None:
        self.content.append(content)
        self.tool_calls.extend(calls)


def message_content(content: Sequence[str], tool_calls: Sequence[ToolCall]) -> str | None:
    """The final message's `content`: null when the answer is tool calls and nothing but whitespace
    beside them, as GroqCloud sends it."""
    text = "".join(content)
    if tool_calls and not text.strip():
        return None
    return text


def check_answer(
    plan: OutputPlan,
    content: str,
    tool_calls: Sequence[ToolCall],
    failed: str,
    *,
    unparsed_calls: bool = False,
) -> None:
    """A finished answer against the promises of its plan, whichever engine produced it: tool calls
    name offered tools with arguments valid for them, JSON mode parses, a schema validates. A broken
    promise is GroqCloud's 400 with `failed` as `failed_generation` (the content for JSON errors)."""
    if plan.tools:
        if unparsed_calls:
            raise _failed("Failed to parse tool call arguments as JSON", "tool_use_failed", failed)
        specs = {tool.name: tool for tool in plan.tools}
        for call in tool_calls:
            spec = specs.get(call.name)
            if spec is None:
                if plan.check_tool_names:
                    raise _failed(
                        f"Tool call validation failed: attempted to call tool '{call.name}' which was "
                        "not in request.tools",
                        "tool_use_failed",
                        failed,
                    )
                continue
            reason = validation_error(json.loads(call.arguments), spec.parameters or {})
            if reason is not None:
                raise _failed(
                    f"Tool call validation failed: parameters for tool {call.name} did not match "
                    f"schema: {reason}",
                    "tool_use_failed",
                    failed,
                )
    if plan.json is None or tool_calls:
        return
    try:
        value = json.loads(content)
    except ValueError:
        raise _failed(
            "Failed to generate JSON. Please adjust your prompt.", "json_validate_failed", content
        ) from None
    if plan.json == "object" and not isinstance(value, dict):
        raise _failed("JSON mode output must be a JSON object.", "json_validate_failed", content) from None
    if plan.json == "schema" and plan.schema is not None:
        reason = validation_error(value, plan.schema)
        if reason is not None:
            raise _failed(
                f"Generated JSON does not match the expected schema {reason}",
                "json_validate_failed",
                content,
            )


def _failed(message: str, code: str, generation: str) -> InvalidRequest:
    return InvalidRequest(message, code=code, extra={"failed_generation": generation})
