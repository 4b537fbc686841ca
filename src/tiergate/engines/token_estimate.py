"""A prompt's token count without the model's tokenizer: what admission reserves for an upstream that has
no `/tokenize` endpoint (OpenAI, GroqCloud, SGLang, Ollama, generic servers).

The estimate is ceil(characters / 4) of everything the chat template will show the model (message
text, tool-call names and arguments, tool definitions) plus 4 tokens per message for the template's
role markers, plus 3 for the assistant header. English averages about 4 characters per token with
the BPE vocabularies of current models; code and other languages run denser, so this can undercount
by a third. It only sizes the reservation: limits are settled with the upstream's reported usage.
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson

CHARS_PER_TOKEN = 4
PER_MESSAGE = 4
REPLY_HEADER = 3


def estimate_tokens(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    chars = 0
    for message in messages:
        chars += len(plain_text(message.get("content")))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    # Nested too deeply to encode: refused when it is sent (engines/upstream.py), so it needs no count.
    with contextlib.suppress(orjson.JSONEncodeError):
        chars += len(orjson.dumps(tools)) if tools else 0
    return tokens_for_chars(chars) + PER_MESSAGE * len(messages) + REPLY_HEADER


def tokens_for_chars(chars: int) -> int:
    """ceil(chars / 4): English runs about 4 characters per token (code and other languages denser)."""
    return -(-chars // CHARS_PER_TOKEN)


def rendered_text(messages: list[dict[str, Any]]) -> str:
    """The messages as plain text, for tokenizers that take a string (llama-server's /tokenize)."""
    return "\n".join(f"{m.get('role', '')}\n{plain_text(m.get('content'))}" for m in messages)


def plain_text(content: Any) -> str:
    """A message's text: the string itself, or its text parts joined (images and audio have none)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
