"""The model's own tokenizer for upstreams without /tokenize: a GGUF opened vocabulary-only, counting
the prompt its chat template renders (e2e: tests/e2e/test_gateway.py checks it against llama-cpp's own
count); a prompt the template refuses falls back (None), never fails the request."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.gateway_helpers import gguf_path
from tiergate.engines.upstream_tokenizer import ModelTokenizer, TokenizerUnusable

HI = [{"role": "user", "content": "Say hi."}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def tokenizer(models_dir: Path) -> ModelTokenizer:
    return ModelTokenizer(str(gguf_path(models_dir)))


def test_the_prompt_is_counted_with_the_chat_template_and_the_generation_prompt(
    tokenizer: ModelTokenizer,
) -> None:
    count = tokenizer.count(HI)
    # Qwen's template adds its default system message and the assistant header: far more than "Say hi.".
    assert count is not None and count > 20
    longer = tokenizer.count(
        [*HI, {"role": "assistant", "content": "hi"}, {"role": "user", "content": "again"}]
    )
    assert longer is not None and longer > count
    tools = tokenizer.count(HI, [WEATHER])
    assert tools is not None and tools > count + 10  # the template lists the tool definitions


def test_text_parts_count_as_the_same_text(tokenizer: ModelTokenizer) -> None:
    parts = [{"role": "user", "content": [{"type": "text", "text": "Say "}, {"type": "text", "text": "hi."}]}]
    assert tokenizer.count(parts) == tokenizer.count(HI)


async def test_a_prompt_the_template_cannot_render_counts_as_unknown(tokenizer: ModelTokenizer) -> None:
    assert await tokenizer.count_async([{"role": "user", "content": {"not": "text"}}, 7]) is None  # type: ignore[list-item]
    assert await tokenizer.count_async(HI) == tokenizer.count(HI)


def test_a_file_that_is_not_a_gguf_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(TokenizerUnusable):
        ModelTokenizer(str(bad))
