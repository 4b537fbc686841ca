"""Tool calls in the Hermes/Qwen format: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.

Two halves: a grammar that forces (tool_choice required/named) or allows (auto) calls whose arguments
match each tool's parameters schema, and a streaming parser that turns the model's text back into
content plus complete tool calls. A call is emitted whole once its closing tag arrives: the SDKs
assemble tool-call deltas by index, and one delta per call is the simplest thing they accept.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tiergate import ids
from tiergate.generation.json_schema import GrammarBuilder, literal

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolSpec:
    """What the grammar needs from one function tool."""

    name: str
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class ToolCall:
    index: int
    id: str
    name: str
    arguments: str  # JSON text, as the OpenAI wire format has it

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def tool_call_grammar(
    tools: Sequence[ToolSpec],
    *,
    mode: str,
    parallel: bool,
    content_rule: str | None = None,
    builder: GrammarBuilder | None = None,
) -> str:
    """GBNF for the model's output when tools are offered.

    mode "required": one call (or several when parallel) and nothing else; pass a single tool for a
    named tool_choice. mode "auto": either calls, or content: `content_rule` (a JSON rule for JSON mode)
    or free text that does not start with `<` (so a call cannot begin unconstrained at the start).
    """
    b = builder or GrammarBuilder()
    b.primitive("ws")
    alternatives = []
    for tool in tools:
        args = b.schema(tool.parameters or _EMPTY_PARAMETERS, f"args-{tool.name}")
        head = literal(f'{OPEN}\n{{"name": "{tool.name}", "arguments": ')
        alternatives.append(b.add(f"call-{tool.name}", f'{head} {args} ws "}}" {literal(chr(10) + CLOSE)}'))
    call = b.add("call", " | ".join(alternatives))
    calls = b.add("calls", f'{call} ("\\n" {call})*' if parallel else call)
    if mode == "required":
        return b.render(calls)
    if content_rule is None:
        content_rule = b.add("text", "[^<] [\\x01-\\U0010FFFF]*")
    return b.render(f"{calls} | {content_rule}")


@dataclass
class ParsedPiece:
    """What one fed text piece turned into: plain content and/or finished calls, in order."""

    content: str = ""
    calls: tuple[ToolCall, ...] = ()


class ToolCallParser:
    """Feed model text in order; content outside the tags passes through, calls come out whole."""

    def __init__(self) -> None:
        self._held = ""
        self._inside = False
        self._count = 0
        self.failed: str | None = None  # the raw text of a call that did not parse

    @property
    def count(self) -> int:
        return self._count

    def feed(self, piece: str) -> ParsedPiece:
        buffer = self._held + piece
        content: list[str] = []
        calls: list[ToolCall] = []
        while buffer:
            if self._inside:
                end = buffer.find(CLOSE)
                if end < 0:
                    break
                calls.extend(self._parse(buffer[:end]))
                buffer = buffer[end + len(CLOSE) :]
                self._inside = False
                continue
            start = buffer.find(OPEN)
            if start >= 0:
                content.append(buffer[:start])
                buffer = buffer[start + len(OPEN) :]
                self._inside = True
                continue
            keep = _partial_suffix(buffer, OPEN)
            content.append(buffer[: len(buffer) - keep])
            buffer = buffer[len(buffer) - keep :]
            break
        self._held = buffer
        return ParsedPiece("".join(content), tuple(calls))

    def flush(self) -> ParsedPiece:
        """The stream ended: an unclosed call is parsed if it is complete JSON, else returned as text."""
        held, self._held = self._held, ""
        if not self._inside:
            return ParsedPiece(held)
        self._inside = False
        calls = self._parse(held)
        return ParsedPiece("", tuple(calls)) if calls else ParsedPiece(OPEN + held)

    def _parse(self, body: str) -> list[ToolCall]:
        call = parse_call(body)
        if call is None:
            self.failed = f"{OPEN}{body}{CLOSE}"
            return []
        name, arguments = call
        self._count += 1
        return [ToolCall(self._count - 1, ids.tool_call_id(), name, arguments)]


def parse_call(body: str) -> tuple[str, str] | None:
    """`{"name": ..., "arguments": {...}}` -> (name, arguments as compact JSON), or None."""
    try:
        data = json.loads(body.strip())
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    return data["name"], json.dumps(arguments, ensure_ascii=False)


def _partial_suffix(buffer: str, tag: str) -> int:
    for length in range(min(len(tag) - 1, len(buffer)), 0, -1):
        if buffer.endswith(tag[:length]):
            return length
    return 0
