"""An upstream's chat answer (one body, or stream chunks) -> our OutputDeltas, plus what the final message
and usage need. It plays the OutputReader's part for remote runs: the upstream templated, constrained
and parsed its own output; here it is re-shaped, then checked against the request's promises.

Text and reasoning pass through as they arrive (`reasoning` on GroqCloud, `reasoning_content` on vLLM,
SGLang and llama-server), shown as the request's reasoning format asks: `parsed` as reasoning,
`hidden` not at all, `raw` inside `<think>` tags in the content. Tool calls arrive in fragments (id
and name first, arguments in pieces); each goes out whole at the end, as the embedded engine sends
them, because the SDKs concatenate every string they see for one index and would garble a repeated
id or name.

Anything not shaped like a chat completion (a `function` that is not an object, arguments that are
neither text nor an object, choices that are not a list, ...) raises GarbledAnswer: the caller turns it
into a 502, or an SSE error event once the stream has started. `check()` then holds the answer to
what the request asked for, with the embedded engine's own checks (output.check_answer): JSON mode
parses, a schema validates, tool calls name offered tools with arguments that parse and validate;
a broken promise is GroqCloud's 400 (`json_validate_failed`, `tool_use_failed`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate import ids
from tiergate.errors import InvalidRequest
from tiergate.generation.output import OutputDelta, OutputPlan, check_answer, message_content
from tiergate.generation.reasoning import THINK_CLOSE, THINK_OPEN
from tiergate.generation.tool_calls import ToolCall

FINISH_REASONS = ("stop", "length", "tool_calls", "function_call", "content_filter")
# Token counts above this are not a real answer's; they are ignored rather than settled.
_MAX_TOKENS = 2**31 - 1


class GarbledAnswer(ValueError):
    """The upstream's body or chunk is not shaped like a chat completion."""


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class UpstreamOutput:
    plan: OutputPlan = field(default_factory=OutputPlan)
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int = 0
    # Stream chunks that carried output: servers send about one token per chunk, the best count
    # there is when they report no usage.
    chunks_with_output: int = 0
    _partial: dict[int, _PartialCall] = field(default_factory=dict)
    _think_open: bool = False  # raw format: a `<think>` went out and its `</think>` has not yet

    # -- reading -----------------------------------------------------------------------------
    def read_body(self, body: dict[str, Any]) -> OutputDelta:
        """A whole chat.completion (non-streaming)."""
        self._usage(body)
        choice = _first_choice(body)
        message = choice.get("message")
        if not isinstance(message, dict):
            raise GarbledAnswer("choice without a message")
        self._finish(choice.get("finish_reason"))
        content = _content(message.get("content"))
        reasoning = _reasoning(message)
        self._fragments(message.get("tool_calls"), whole=True)
        self._legacy_call(message.get("function_call"), whole=True)
        calls = self._complete_calls()
        return self._delta(content, reasoning, calls, last=True)

    def read_chunk(self, chunk: dict[str, Any]) -> OutputDelta:
        """One chat.completion.chunk; a usage-only chunk (no choices) yields nothing."""
        self._usage(chunk)
        choices = chunk.get("choices")
        if choices is None:
            if "usage" not in chunk and "x_groq" not in chunk:
                raise GarbledAnswer("chunk without choices")
            return OutputDelta()
        if not isinstance(choices, list):
            raise GarbledAnswer("choices is not a list")
        if not choices:
            return OutputDelta()
        choice = _first_choice(chunk)
        delta = choice.get("delta")
        if delta is None:
            delta = {}
        if not isinstance(delta, dict):
            raise GarbledAnswer("delta is not an object")
        self._finish(choice.get("finish_reason"))
        self._fragments(delta.get("tool_calls"), whole=False)
        self._legacy_call(delta.get("function_call"), whole=False)
        reasoning = _reasoning(delta)
        content = _content(delta.get("content"))
        if content or reasoning or delta.get("tool_calls") or delta.get("function_call"):
            self.chunks_with_output += 1
        return self._delta(content, reasoning, ())

    def flush(self) -> OutputDelta:
        """At the end of the stream: the tool calls, now complete."""
        return self._delta("", "", self._complete_calls(), last=True)

    # -- what the final message needs (same surface as OutputReader) ------------------------------
    def message_content(self) -> str | None:
        return message_content(self.content, self.tool_calls)

    def message_reasoning(self) -> str | None:
        if self.plan.reasoning in ("raw", "hidden"):
            return None  # raw: it is in the content; hidden: not shown at all
        return "".join(self.reasoning).strip() or None

    def completion_chars(self) -> int:
        calls = sum(len(c.name) + len(c.arguments) for c in self.tool_calls)
        reasoning = 0 if self.plan.reasoning == "raw" else sum(map(len, self.reasoning))
        return sum(map(len, self.content)) + reasoning + calls

    def check(self) -> None:
        """Raise the 400 GroqCloud gives when the answer broke the request's contract (see module doc)."""
        generation = self._generation()
        for call in self.tool_calls:
            if not _parses(call.arguments):
                raise InvalidRequest(
                    "Failed to parse tool call arguments as JSON",
                    code="tool_use_failed",
                    extra={"failed_generation": generation},
                )
        try:
            check_answer(self.plan, "".join(self.content), self.tool_calls, generation)
        except RecursionError:  # a JSON value nested deeper than the validator can walk
            code = "tool_use_failed" if self.tool_calls else "json_validate_failed"
            text = generation if self.tool_calls else "".join(self.content)
            raise InvalidRequest(
                "The output is nested too deeply to validate.", code=code, extra={"failed_generation": text}
            ) from None

    # -- internals --------------------------------------------------------------------------
    def _generation(self) -> str:
        """The answer as text for `failed_generation`: the content, then each tool call as JSON."""
        calls = [{"name": c.name, "arguments": c.arguments} for c in self.tool_calls]
        text = "".join(self.content)
        return text + (json.dumps(calls) if calls else "")

    def _delta(
        self, content: str, reasoning: str, calls: tuple[ToolCall, ...], *, last: bool = False
    ) -> OutputDelta:
        if reasoning:
            self.reasoning.append(reasoning)
        mode = self.plan.reasoning
        if mode == "hidden":
            reasoning = ""
        elif mode == "raw":
            content, reasoning = self._raw(content, reasoning, closing=last or bool(calls)), ""
        if content:
            self.content.append(content)
        return OutputDelta(content, reasoning, calls)

    def _raw(self, content: str, reasoning: str, *, closing: bool) -> str:
        """Reasoning back inside the content, in the `<think>` block the raw format shows."""
        text = ""
        if reasoning:
            text = reasoning if self._think_open else THINK_OPEN + reasoning
            self._think_open = True
        if self._think_open and (content or closing):
            text += THINK_CLOSE
            self._think_open = False
        return text + content

    def _finish(self, reason: Any) -> None:
        if isinstance(reason, str) and reason:
            self.finish_reason = reason if reason in FINISH_REASONS else "stop"

    def _usage(self, payload: dict[str, Any]) -> None:
        usage = payload.get("usage")
        x_groq = payload.get("x_groq")
        if not isinstance(usage, dict) and isinstance(x_groq, dict):
            usage = x_groq.get("usage")
        if not isinstance(usage, dict):
            return
        if (prompt := _count(usage.get("prompt_tokens"))) is not None:
            self.prompt_tokens = prompt
        if (completion := _count(usage.get("completion_tokens"))) is not None:
            self.completion_tokens = completion
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict) and (reasoning := _count(details.get("reasoning_tokens"))) is not None:
            self.reasoning_tokens = reasoning

    def _legacy_call(self, call: Any, *, whole: bool) -> None:
        """The deprecated `function_call` field: one call, without an id."""
        if call is not None:
            self._fragments([{"index": 0, "function": call}], whole=whole)

    def _fragments(self, calls: Any, *, whole: bool) -> None:
        if calls is None:
            return
        if not isinstance(calls, list):
            raise GarbledAnswer("tool_calls is not a list")
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                raise GarbledAnswer("a tool call is not an object")
            index = position if whole else call.get("index", position)
            if not isinstance(index, int) or isinstance(index, bool):
                index = position
            partial = self._partial.setdefault(index, _PartialCall())
            if isinstance(call.get("id"), str) and call["id"]:
                partial.id = call["id"]
            function = call.get("function")
            if function is None:
                continue  # a fragment with only the id or the type
            if not isinstance(function, dict):
                raise GarbledAnswer("a tool call's function is not an object")
            name = function.get("name")
            if name is not None and not isinstance(name, str):
                raise GarbledAnswer("a tool call's name is not text")
            if name:
                partial.name = name
            partial.arguments.append(_arguments(function.get("arguments")))

    def _complete_calls(self) -> tuple[ToolCall, ...]:
        done = tuple(
            ToolCall(
                index=len(self.tool_calls) + n,
                id=partial.id or ids.tool_call_id(),
                name=partial.name,
                arguments="".join(partial.arguments) or "{}",
            )
            for n, (_, partial) in enumerate(sorted(self._partial.items()))
        )
        self._partial.clear()
        self.tool_calls.extend(done)
        return done


def _first_choice(payload: dict[str, Any]) -> dict[str, Any]:
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise GarbledAnswer("no choices")
    return choices[0]


def _content(value: Any) -> str:
    """Message or delta content: text, null, or a list of text parts (some servers send parts)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        return "".join(part["text"] for part in value if isinstance(part.get("text"), str))
    raise GarbledAnswer("content is neither text nor a list of parts")


def _reasoning(message: dict[str, Any]) -> str:
    """Reasoning under either name; other types are ignored (it is an extension, not the answer)."""
    for key in ("reasoning", "reasoning_content"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _arguments(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # Ollama sends arguments as an object
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            raise GarbledAnswer("tool call arguments nested too deeply") from None
    raise GarbledAnswer("tool call arguments are neither text nor an object")


def _count(value: Any) -> int | None:
    """A token count as reported, or None when it is not a plausible one (negative, huge, a bool)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TOKENS:
        return value
    return None


def _parses(arguments: str) -> bool:
    try:
        json.loads(arguments)
    except (ValueError, RecursionError):
        return False
    return True
