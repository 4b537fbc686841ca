"""Tool calls in the Hermes/Qwen format: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`.

Two halves: a grammar that forces (tool_choice required/named) or allows (auto) calls whose arguments
match each tool's parameters schema, and a streaming parser that turns the model's text back into
content plus complete tool calls. A call is emitted whole once its closing tag arrives: the SDKs
assemble tool-call deltas by index, and one delta per call is the simplest thing they accept.

An answer is either text or calls, never both: the auto grammar's text branch cannot contain
`<tool_call>` (so no call is ever written outside the arguments' schema), and the parser stops
looking for calls once text has begun. The newline the grammar puts between two calls is layout,
not content.
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
    or free text that does not start with `<` and never contains `<tool_call>` (an unconstrained call
    could otherwise follow a few words of text).
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
        content_rule = b.add("text", f"[^<\\x00] {b.text_without('text', OPEN)}")
    return b.render(f"{calls} | {content_rule}")


@dataclass
class ParsedPiece:
    """What one fed text piece turned into: plain content and/or finished calls, in order."""

    content: str = ""
    calls: tuple[ToolCall, ...] = ()


class ToolCallParser:
    """Feed model text in order; get plain content, or calls lifted out whole.

    What comes first decides: text (then everything is content, `<tool_call>` inside a JSON string
    included) or a call (then whitespace around calls is dropped). Whitespace before either is held
    until it is known which.
    """

    def __init__(self) -> None:
        self._held = ""
        self._inside = False
        self._text = False  # the answer is text: no more calls
        self._count = 0
        self.failed: str | None = None  # the raw text of a call that did not parse

    @property
    def count(self) -> int:
        return self._count

    def feed(self, piece: str) -> ParsedPiece:
        if self._text:
            return ParsedPiece(piece)
        buffer = self._held + piece
        content = ""
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
            body = buffer.lstrip()
            if body.startswith(OPEN):
                buffer = body[len(OPEN) :]
                self._inside = True
                continue
            if not body or OPEN.startswith(body):
                break  # whitespace, or the start of a tag: wait for more
            # Text first: all content. Text after calls is outside every grammar; keep it visible.
            self._text = True
            content = buffer if not self._count else body
            buffer = ""
        self._held = buffer
        return ParsedPiece(content, tuple(calls))

    def flush(self) -> ParsedPiece:
        """The stream ended: an unclosed call is parsed if it is complete JSON, else returned as text."""
        held, self._held = self._held, ""
        if not self._inside:
            # Held whitespace after calls is layout; with no calls at all it was the whole answer.
            return ParsedPiece("" if self._count and not held.strip() else held)
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
