"""Does a GBNF grammar accept a text? Checked by llama.cpp itself, over the embedded model's vocabulary.

`llama_cpp.LlamaGrammar.from_string` only stores the string, so it proves nothing; this builds the
grammar sampler the engine builds and feeds it the text's tokens one by one, as sampling would.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path

import llama_cpp


class Vocabulary:
    """The GGUF's vocabulary only (no weights): enough to parse grammars and tokenize."""

    def __init__(self, gguf: Path) -> None:
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = llama_cpp.llama_model_load_from_file(str(gguf).encode(), params)
        if not self._model:
            raise RuntimeError(f"could not load the vocabulary of {gguf}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._eos = llama_cpp.llama_vocab_eos(self._vocab)

    def tokens(self, text: str) -> list[int]:
        data = text.encode()
        buffer = (llama_cpp.llama_token * (len(data) + 8))()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, len(buffer), False, True)
        assert n >= 0
        return list(buffer[:n])

    def compiles(self, grammar: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    def accepts(self, grammar: str, text: str, *, complete: bool = True) -> bool:
        """True if `text` fits the grammar token by token (and, when `complete`, may end there)."""
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        assert sampler, "grammar did not parse"
        try:
            tokens = self.tokens(text)
            for token in tokens:
                if not self._allowed(sampler, token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return not complete or self._allowed(sampler, self._eos)
        finally:
            llama_cpp.llama_sampler_free(sampler)

    @staticmethod
    def _allowed(sampler: object, token: int) -> bool:
        single = llama_cpp.llama_token_data(id=token, logit=1.0, p=0.0)
        array = llama_cpp.llama_token_data_array(
            data=ctypes.pointer(single), size=1, selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(array))
        return single.logit != float("-inf")


@functools.cache
def vocabulary(models_dir: Path) -> Vocabulary:
    """One vocabulary per test session (loading it takes about two seconds)."""
    return Vocabulary(models_dir / "qwen2.5-coder-0.5b-instruct.gguf")
