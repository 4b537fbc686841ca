"""An upstream's chat answer (one body, or stream chunks) -> our OutputDeltas, plus what the final message
and usage need. It plays the OutputReader's part for remote runs: the upstream already constrained and
parsed its output, so nothing is re-validated here, only re-shaped.

Text and reasoning pass through as they arrive (`reasoning` on GroqCloud, `reasoning_content` on vLLM,
SGLang and llama-server). Tool calls arrive in fragments (id and name first, arguments in pieces);
each goes out whole at the end, as the embedded engine sends them, because the SDKs concatenate every
string they see for one index and would garble a repeated id or name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from tiergate import ids
from tiergate.generation.output import OutputDelta
from tiergate.generation.tool_calls import ToolCall

FINISH_REASONS = ("stop", "length", "tool_calls", "function_call", "content_filter")


class GarbledAnswer(ValueError):
    """The upstream's body or chunk is not shaped like a chat completion."""


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class UpstreamOutput:
    legacy_functions: bool = False
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

    # -- reading -----------------------------------------------------------------------------
    def read_body(self, body: dict[str, Any]) -> OutputDelta:
        """A whole chat.completion (non-streaming)."""
        self._usage(body)
        choice = _first_choice(body)
        message = choice.get("message")
        if not isinstance(message, dict):
            raise GarbledAnswer("choice without a message")
        self._finish(choice.get("finish_reason"))
        content = _text(message.get("content"))
        reasoning = _text(message.get("reasoning")) or _text(message.get("reasoning_content"))
        self._fragments(message.get("tool_calls"), whole=True)
        if isinstance(message.get("function_call"), dict):
            self._fragments([{"index": 0, "function": message["function_call"]}], whole=True)
        return self._delta(content, reasoning, self._complete_calls())

    def read_chunk(self, chunk: dict[str, Any]) -> OutputDelta:
        """One chat.completion.chunk; a usage-only chunk (no choices) yields nothing."""
        self._usage(chunk)
        choices = chunk.get("choices")
        if not choices:
            if choices is None and "usage" not in chunk and "x_groq" not in chunk:
                raise GarbledAnswer("chunk without choices")
            return OutputDelta()
        choice = _first_choice(chunk)
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise GarbledAnswer("delta is not an object")
        self._finish(choice.get("finish_reason"))
        self._fragments(delta.get("tool_calls"), whole=False)
        if isinstance(delta.get("function_call"), dict):
            self._fragments([{"index": 0, "function": delta["function_call"]}], whole=False)
        reasoning = _text(delta.get("reasoning")) or _text(delta.get("reasoning_content"))
        content = _text(delta.get("content"))
        if content or reasoning or delta.get("tool_calls") or delta.get("function_call"):
            self.chunks_with_output += 1
        return self._delta(content, reasoning, ())

    def flush(self) -> OutputDelta:
        """At the end of the stream: the tool calls, now complete."""
        return self._delta("", "", self._complete_calls())

    # -- what the final message needs (same surface as OutputReader) ------------------------------
    def message_content(self) -> str | None:
        text = "".join(self.content)
        if self.tool_calls and not text.strip():
            return None
        return text

    def message_reasoning(self) -> str | None:
        return "".join(self.reasoning).strip() or None

    def completion_chars(self) -> int:
        calls = sum(len(c.name) + len(c.arguments) for c in self.tool_calls)
        return sum(map(len, self.content)) + sum(map(len, self.reasoning)) + calls

    # -- internals --------------------------------------------------------------------------
    def _delta(self, content: str, reasoning: str, calls: tuple[ToolCall, ...]) -> OutputDelta:
        if content:
            self.content.append(content)
        if reasoning:
            self.reasoning.append(reasoning)
        return OutputDelta(content, reasoning, calls)

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
        if isinstance(usage.get("prompt_tokens"), int):
            self.prompt_tokens = usage["prompt_tokens"]
        if isinstance(usage.get("completion_tokens"), int):
            self.completion_tokens = usage["completion_tokens"]
        details = usage.get("completion_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
            self.reasoning_tokens = details["reasoning_tokens"]

    def _fragments(self, calls: Any, *, whole: bool) -> None:
        if calls is None:
            return
        if not isinstance(calls, list):
            raise GarbledAnswer("tool_calls is not a list")
        for position, call in enumerate(calls):
            if not isinstance(call, dict):
                raise GarbledAnswer("a tool call is not an object")
            index = call.get("index", position) if not whole else position
            partial = self._partial.setdefault(index if isinstance(index, int) else position, _PartialCall())
            if isinstance(call.get("id"), str) and call["id"]:
                partial.id = call["id"]
            function = call.get("function") or {}
            if isinstance(function.get("name"), str) and function["name"]:
                partial.name = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                partial.arguments.append(arguments)
            elif isinstance(arguments, dict):  # Ollama sends arguments as an object
                partial.arguments.append(orjson.dumps(arguments).decode())

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


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
