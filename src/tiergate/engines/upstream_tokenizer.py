"""An upstream model's own tokenizer, for servers without `/tokenize`: the prompt counted exactly.

`options.tokenizer` names a GGUF file of the model the upstreams serve (the same weights file, or any
GGUF of that model: only its vocabulary and chat template are read). llama-cpp-python opens it in
vocab-only mode, so no weights are loaded (~1 s and ~50 MB for Qwen2.5's 150k-token vocabulary, once
at start, in the loading thread). A prompt is rendered with the GGUF's own chat template, the
generation prompt appended, and tokenized the way llama-cpp-python's server does it, so against that
server the count is exact; vLLM and SGLang apply the model's Hugging Face template, usually the same.

Counting never fails a request: a template that refuses the messages returns None and the caller
falls back to the estimate (engines/token_estimate.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from tiergate.engines.token_estimate import plain_text

log = logging.getLogger("tiergate.upstream")


class TokenizerUnusable(Exception):
    """The tokenizer file cannot count chat prompts (not a GGUF, or no chat template)."""


class ModelTokenizer:
    """Vocabulary and chat template of one GGUF; thread-safe (both are read-only once loaded)."""

    def __init__(self, path: str) -> None:
        try:
            self._llama = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        except ValueError as exc:  # llama-cpp-python's way of saying the file did not load
            raise TokenizerUnusable(f"{path}: not a loadable GGUF ({exc})") from None
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise TokenizerUnusable(f"{path}: the GGUF has no tokenizer.chat_template")
        eos, bos = self._token_text(self._llama.token_eos()), self._token_text(self._llama.token_bos())
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
        self.path = path

    def _token_text(self, token: int) -> str:
        return "" if token < 0 else self._llama.detokenize([token], special=True).decode("utf-8", "replace")

    def count(self, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int | None:
        """Prompt tokens of this chat request (None: the template could not render it). Blocking."""
        try:
            result = self._formatter(messages=[_message(m) for m in messages], tools=tools or None)
            tokens = self._llama.tokenize(
                result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
            )
        except Exception as exc:  # a template raises what it likes; counting falls back, never fails
            log.debug("tokenizer %s could not render a prompt: %s", self.path, type(exc).__name__)
            return None
        return len(tokens)

    async def count_async(self, messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int | None:
        """`count` in a worker thread: rendering and tokenizing a long prompt takes milliseconds."""
        return await asyncio.to_thread(self.count, messages, tools)


def _message(message: Any) -> Any:
    """Content parts (text only reaches the model) as one string, as servers do for text models."""
    if isinstance(message, dict) and isinstance(message.get("content"), list):
        return {**message, "content": plain_text(message["content"])}
    return message
