"""A prompt's token count without the model's tokenizer: what admission reserves for an upstream that has
no `/tokenize` endpoint (OpenAI, GroqCloud, SGLang, Ollama, generic servers).

The estimate is ceil(characters / 4) of everything the chat template will show the model (message
text, tool-call names and arguments, tool definitions) plus 4 tokens per message for the template's
role markers, plus 3 for the assistant header. English averages about 4 characters per token with
the BPE vocabularies of current models; code and other languages run denser, so this can undercount
by a third. It only sizes the reservation: limits are settled with the upstream's reported usage.
"""

from __future__ import annotations

from typing import Any

import orjson

PER_MESSAGE = 4
REPLY_HEADER = 3


def estimate_tokens(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    chars = 0
    for message in messages:
        chars += _text_chars(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            chars += len(str(function.get("name", ""))) + len(str(function.get("arguments", "")))
    if tools:
        chars += len(orjson.dumps(tools))
    return -(-chars // 4) + PER_MESSAGE * len(messages) + REPLY_HEADER


def rendered_text(messages: list[dict[str, Any]]) -> str:
    """The messages as plain text, for tokenizers that take a string (llama-server's /tokenize)."""
    return "\n".join(f"{m.get('role', '')}\n{_text(m.get('content'))}" for m in messages)


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    return len(_text(content))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""
