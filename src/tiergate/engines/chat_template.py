"""A GGUF's chat template (`tokenizer.chat_template`) rendered the way transformers and llama.cpp do:
a sandboxed Jinja environment with their `tojson`, `raise_exception` and `strftime_now`, tool-call
arguments turned back into objects, and assistant prefill (continue_final_message).

Its errors are the client's: a template that rejects the messages (raise_exception) or cannot format
them is a 400 naming `messages`, never a 500.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tiergate.errors import InvalidRequest


class _TemplateRejected(Exception):
    """raise_exception() called by the chat template: its message was written for users."""


class ChatTemplate:
    """The GGUF's `tokenizer.chat_template`, rendered the way transformers and llama.cpp do."""

    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_template_error
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(source)
        self._bos = bos_token
        self._eos = eos_token

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        continue_final_message: bool,
    ) -> str:
        messages = [_template_message(m) for m in messages]
        if not continue_final_message:
            return self._render(messages, tools, add_generation_prompt=True)
        if not messages or messages[-1].get("role") != "assistant":
            raise InvalidRequest(
                "continue_final_message needs the last message to be from the assistant", param="messages"
            )
        prefill = messages[-1].get("content") or ""
        if not isinstance(prefill, str):
            raise InvalidRequest("an assistant prefill must be plain text", param="messages")
        if not prefill:
            # Nothing to continue: the prompt is the open assistant turn itself.
            return self._render(messages[:-1], tools, add_generation_prompt=True)
        # Render the whole turn and cut right after the prefill text: this drops the end-of-turn marker
        # whatever the template calls it (transformers does the same for continue_final_message).
        text = self._render(messages, tools, add_generation_prompt=False)
        cut = text.rfind(prefill)
        if cut < 0:  # the template stripped whitespace from the content
            prefill = prefill.strip()
            cut = text.rfind(prefill)
        if cut < 0:
            raise InvalidRequest("the assistant prefill could not be placed in the prompt", param="messages")
        return text[: cut + len(prefill)]

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, **kw: Any) -> str:
        try:
            return self._template.render(
                messages=messages, tools=tools or None, bos_token=self._bos, eos_token=self._eos, **kw
            )
        except _TemplateRejected as exc:
            raise InvalidRequest(
                f"The chat template rejected the messages: {exc}", param="messages"
            ) from None
        except jinja2.TemplateError:
            raise InvalidRequest(
                "The messages could not be formatted with the model's chat template", param="messages"
            ) from None


def _template_message(message: dict[str, Any]) -> dict[str, Any]:
    """Tool-call arguments arrive as JSON text (OpenAI wire format); templates `tojson` them as objects."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    converted = []
    for call in calls:
        function = dict(call.get("function") or {})
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            with contextlib.suppress(ValueError):
                function["arguments"] = json.loads(arguments)
        converted.append({**call, "function": function})
    return {**message, "tool_calls": converted}


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # transformers' chat-template tojson: non-ASCII kept as is, unlike jinja2's HTML-safe default.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _raise_template_error(message: str) -> None:
    raise _TemplateRejected(message)
