"""The embedded engine: llama.cpp through llama-cpp-python, all slots batched in one context.

Parallelism: one llama.cpp context holds one KV sequence per slot, and one decode thread (owned by
the engine) advances every active sequence with a single `llama_decode` per step: a decode token for
each generating slot plus prompt chunks of slots still prefilling. Only this thread touches the
context; the event loop only tokenizes, which reads the immutable vocabulary.

Why batched (bench/engine.py, 2-core machine, greedy, 48 tokens per stream, aggregate tok/s):
one context batching 2 / 4 streams gave 33-36 / 37-50 tok/s against 29 / 13-21 for one `Llama`
context per slot. Threads default to every core, but llama.cpp's worker threads spin at a barrier:
when other processes compete for the cores, 2 threads on 2 cores fell to 0.7-4 tok/s while 1 thread
kept 6-9; OMP_WAIT_POLICY=PASSIVE avoids most of that collapse, at ~40% of quiet-machine speed.

Each slot keeps its KV cache after a request, so the next request on that slot reuses the common
prompt prefix (a shared system prompt or a growing conversation is not prefilled again).

Cancellation: the decode thread checks each request's flag before every step, so an `aclose()`
(client gone) frees the slot within one step.

What the service must check before admission (see `completion_budget`):
    prompt tokens >= spec.context_window  ->  InvalidRequest 400 (code context_length_exceeded).
The engine then clamps generation so prompt + completion never exceeds the context (finish "length").
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ctypes
import hashlib
import logging
import os
import queue
import random
import sys
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# llama.cpp's CPU backend runs on OpenMP. We leave libgomp's default wait policy (spin briefly at a
# barrier, then sleep): on a quiet 2-core machine it decodes at ~33 tok/s where OMP_WAIT_POLICY=PASSIVE
# gives ~19. On a CPU shared with other busy processes the spinning threads can stall each other
# (2 threads fell to ~1.3 tok/s in one measurement); operators there set OMP_WAIT_POLICY=PASSIVE
# before starting tiergate. See docs/benchmarks.md.
import llama_cpp
import numpy as np

from tiergate.engines.base import ModelSpec, PreparedPrompt, SamplingParams, TokenDelta
from tiergate.engines.chat_template import ChatTemplate
from tiergate.errors import EngineFailure, InvalidRequest

log = logging.getLogger(__name__)

# GroqCloud maps temperature 0 to 1e-8; anything that small is greedy decoding.
_GREEDY_BELOW = 1e-6
# llama.cpp treats this seed as "pick one at random"; a request asking for it gets its neighbour.
_RANDOM_SEED = 0xFFFFFFFF


Emit = Callable[[TokenDelta | None], None]


@dataclass(eq=False)
class _Request:
    """One generation in flight on the decode thread; `done` resolves once its slot is free again."""

    slot: int
    tokens: list[int]
    params: SamplingParams
    budget: int
    cancelled: threading.Event
    emit: Emit
    done: Future[None] = field(default_factory=Future)
    sampler: Any = None  # the sampling chain (greedy, or top_p -> temp -> dist), never the grammar
    grammar: Any = None  # the grammar sampler, checked lazily against the chain's choice (see _sample)
    fed: int = 0  # prompt tokens already in the slot's KV cache
    next_token: int | None = None  # sampled, not yet fed
    row: int = -1  # batch row whose logits this request samples from after the current step
    produced: int = 0
    pending: int = 0  # tokens produced since the last emitted delta
    decoder: codecs.IncrementalDecoder = field(
        # Byte-level BPE splits characters across tokens: hold incomplete UTF-8 until it completes.
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace")
    )


class LlamaCppEngine:
    """Engine protocol over one llama.cpp context with `parallel` sequences (slots)."""

    def __init__(
        self,
        spec: ModelSpec,
        model_path: Path,
        *,
        parallel: int = 2,
        threads: int = 0,
        n_batch: int = 512,
        nice: int = 0,
    ) -> None:
        self.spec = spec
        self._nice = max(0, nice)
        self._slots = max(1, parallel)
        # One context computes for every slot, so it gets every core unless told otherwise.
        self._n_threads = threads or (os.cpu_count() or 1)
        self._n_batch = max(n_batch, self._slots)
        _quiet_llama_logs()
        self._model, self._ctx = self._load(model_path)
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, self._slots)
        self._bos = llama_cpp.llama_vocab_bos(self._vocab)
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        # Grammar checks, decode thread only: a one-entry candidate array for the sampled token, and a
        # whole-vocabulary one (allocated on first use) for resampling when the grammar rejects it.
        self._single = llama_cpp.llama_token_data()
        self._single_array = llama_cpp.llama_token_data_array(
            data=ctypes.pointer(self._single), size=1, selected=-1, sorted=False
        )
        self._candidates: Any = None
        self._candidate_view: np.ndarray | None = None
        self._candidate_ids: np.ndarray | None = None
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0
        template = llama_cpp.llama_model_chat_template(self._model, None)
        if not template:
            raise EngineFailure(f"The model `{spec.id}` has no chat template.")
        eos = llama_cpp.llama_vocab_eos(self._vocab)
        self._template = ChatTemplate(
            template.decode("utf-8"), self._piece_text(self._bos), self._piece_text(eos)
        )
        basis = f"{spec.sha256 or model_path.name}:{llama_cpp.__version__}".encode()
        self.fingerprint = "fp_" + hashlib.sha256(basis).hexdigest()[:10]
        self._kv: list[list[int]] = [[] for _ in range(self._slots)]  # tokens cached per slot
        self._inbox: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"tiergate-decode-{spec.id}", daemon=True)
        self._thread.start()

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def threads(self) -> int:
        """Threads the shared context decodes with."""
        return self._n_threads

    def prepare(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        continue_final_message: bool = False,
    ) -> PreparedPrompt:
        text = self._template.render(messages, tools, continue_final_message)
        return PreparedPrompt(text=text, tokens=self.tokenize(text))

    def tokenize(self, text: str) -> list[int]:
        """Tokens exactly as fed to the model: special tokens parsed, BOS only if the model wants it."""
        data = text.encode("utf-8")
        size = len(data) + 2
        buffer = (llama_cpp.llama_token * size)()
        n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, False, True)
        if n < 0:
            size = -n
            buffer = (llama_cpp.llama_token * size)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, size, False, True)
        tokens = list(buffer[:n])
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def detokenize(self, tokens: Sequence[int]) -> str:
        """Text of `tokens`, special tokens included (the inverse of `tokenize` for prompts)."""
        return b"".join(self._piece(t) for t in tokens).decode("utf-8", "replace")

    def completion_budget(self, prompt_tokens: int, max_tokens: int) -> int:
        """How many tokens may be generated: max_tokens clamped to the room left in the context.

        Raises InvalidRequest (400, context_length_exceeded) when the prompt alone fills the context.
        """
        room = self.spec.context_window - prompt_tokens
        if room <= 0:
            raise InvalidRequest(
                f"Please reduce the length of the messages or completion: the prompt has {prompt_tokens} "
                f"tokens and this model's context window is {self.spec.context_window} tokens.",
                code="context_length_exceeded",
                param="messages",
            )
        return max(0, min(max_tokens, room))

    async def generate(
        self, prompt: PreparedPrompt, params: SamplingParams, slot: int
    ) -> AsyncIterator[TokenDelta]:
        if not 0 <= slot < self._slots:
            raise EngineFailure(f"Slot {slot} does not exist.")
        budget = self.completion_budget(len(prompt.tokens), params.max_tokens)
        if budget == 0:
            yield TokenDelta("", 0, "length")
            return
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[TokenDelta | None] = asyncio.Queue()

        def emit(item: TokenDelta | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed under us: nobody is listening
                loop.call_soon_threadsafe(deltas.put_nowait, item)

        request = _Request(slot, list(prompt.tokens), params, budget, threading.Event(), emit)
        self._inbox.put(request)
        try:
            while True:
                item = await deltas.get()
                if item is None:
                    raise EngineFailure("The model failed while generating.")
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # No waiting for the decode thread to let go: it orders reuse of a slot itself (a new
            # request on this slot starts after this one is dropped at the next step), so the
            # scheduler can hand the slot on at once, e.g. from a preempted batch line.
            request.cancelled.set()

    async def close(self) -> None:
        if self._thread.is_alive():
            self._inbox.put(None)
            await asyncio.to_thread(self._thread.join)
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

    def _load(self, model_path: Path) -> tuple[Any, Any]:
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_mmap = True
        model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), mparams)
        if not model:
            raise EngineFailure(f"The model `{self.spec.id}` could not be loaded.")
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = self.spec.context_window * self._slots
        cparams.n_batch = cparams.n_ubatch = self._n_batch
        cparams.n_seq_max = self._slots
        cparams.n_threads = cparams.n_threads_batch = self._n_threads
        ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise EngineFailure(f"The model `{self.spec.id}` could not be loaded.")
        return model, ctx

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, 64, 0, True)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, -n, 0, True)
        return buffer.raw[:n]

    def _piece_text(self, token: int) -> str:
        return self._piece(token).decode("utf-8", "replace") if token >= 0 else ""

    # Everything below runs on the decode thread only.

    def _run(self) -> None:
        self._lower_priority()
        active: dict[int, _Request] = {}
        waiting: list[_Request] = []
        while True:
            try:
                arrived = [self._inbox.get()] if not active and not waiting else []
                while not self._inbox.empty():
                    arrived.append(self._inbox.get_nowait())
            except queue.Empty:  # pragma: no cover - SimpleQueue.get without timeout never raises
                continue
            if None in arrived:
                for request in [*active.values(), *waiting]:
                    self._finish(request, failed=True)
                return
            waiting.extend(r for r in arrived if r is not None)
            for request in list(waiting):
                if request.slot not in active:  # the scheduler owns slots; this only orders reuse
                    waiting.remove(request)
                    if self._admit(request):
                        active[request.slot] = request
            for request in [r for r in active.values() if r.cancelled.is_set()]:
                del active[request.slot]
                self._finish(request)
            if active:
                self._step(active)

    def _lower_priority(self) -> None:
        """Make this thread `nice` steps nicer; Linux keeps nice per thread, and the OpenMP threads
        llama.cpp starts from here inherit it, so the event loop wins a core whenever it has work."""
        if not self._nice or sys.platform != "linux":
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + self._nice)
        except OSError:
            log.warning("could not lower the decode thread's priority; it runs at the server's")

    def _admit(self, request: _Request) -> bool:
        try:
            request.sampler, request.grammar = _make_sampler(self._vocab, request.params)
        except _BadGrammar:
            request.emit(None)
            request.done.set_result(None)
            return False
        cached = self._kv[request.slot]
        common = 0
        for a, b in zip(cached, request.tokens, strict=False):
            if a != b:
                break
            common += 1
        # At least one prompt token is fed now, so the logits sampled belong to this prompt.
        keep = min(common, len(request.tokens) - 1)
        llama_cpp.llama_memory_seq_rm(self._memory, request.slot, keep, -1)
        del cached[keep:]
        request.fed = keep
        return True

    def _step(self, active: dict[int, _Request]) -> None:
        """One llama_decode over every active slot, then sample where logits were asked for."""
        rows: list[tuple[int, int, int, bool]] = []  # (token, position, slot, wants logits)
        for request in active.values():
            if request.next_token is not None:
                request.row = len(rows)
                rows.append((request.next_token, len(self._kv[request.slot]), request.slot, True))
                self._kv[request.slot].append(request.next_token)
                request.next_token = None
        for request in active.values():
            room = self._n_batch - len(rows)
            if request.fed >= len(request.tokens) or room <= 0:
                continue
            chunk = request.tokens[request.fed : request.fed + room]
            kv = self._kv[request.slot]
            for token in chunk:
                request.fed += 1
                last = request.fed == len(request.tokens)
                if last:
                    request.row = len(rows)
                rows.append((token, len(kv), request.slot, last))
                kv.append(token)
        if not rows:
            return
        self._fill(rows)
        if llama_cpp.llama_decode(self._ctx, self._batch) != 0:
            log.error("llama_decode failed for model %s with %d rows", self.spec.id, len(rows))
            for request in list(active.values()):
                del active[request.slot]
                self._kv[request.slot].clear()
                llama_cpp.llama_memory_seq_rm(self._memory, request.slot, 0, -1)
                self._finish(request, failed=True)
            return
        for request in list(active.values()):
            if request.row < 0:
                continue
            token = self._sample(request)
            request.row = -1
            if token is None:
                log.error("no token of model %s's vocabulary fits the request's grammar", self.spec.id)
                del active[request.slot]
                self._finish(request, failed=True)
                continue
            finish = self._deliver(request, token)
            if finish:
                del active[request.slot]
                self._finish(request)

    def _sample(self, request: _Request) -> int | None:
        """The next token from the request's row of logits; None if the grammar allows no token at all.

        Without a grammar this is one `llama_sampler_sample` over the chain. With one it is llama.cpp's
        own grammar-lazy resampling (common/sampling.cpp): applying a grammar to the whole ~150k-token
        vocabulary each step costs more than the rest of sampling, so the chain samples freely, the
        grammar checks only that token, and only a rejected token pays for the full pass (grammar,
        then the chain again, over every candidate). Greedy output is exactly the grammar-first chain's.
        With dist (top_p 1) a token is still drawn from the grammar-masked distribution (accepting a
        free draw that fits, else drawing from the masked one, gives each allowed token p/P(allowed));
        with top_p < 1 the first draw's nucleus is cut from the whole vocabulary, as in llama.cpp. The
        RNG draws depend only on the seed and the logits, so a seed still fixes the text (though not
        the same text as the former grammar-first chain). EOG stays rejected until the grammar is
        complete, so output always ends on a complete sentence or at max_tokens.
        """
        # llama_sampler_sample applies the chain and accepts the token on it.
        token: int = llama_cpp.llama_sampler_sample(request.sampler, self._ctx, request.row)
        grammar = request.grammar
        if grammar is None:
            return token
        single = self._single
        single.id = token
        single.logit = 1.0
        single.p = 0.0
        self._single_array.selected = -1
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._single_array))
        if single.logit == float("-inf"):
            resampled = self._resample(request)
            if resampled is None:
                return None
            token = resampled
            # As llama_sampler_sample would. The chain also accepted the rejected first pick above:
            # greedy/top_p/temp/dist keep no per-token state, so that has no effect on what follows.
            llama_cpp.llama_sampler_accept(request.sampler, token)
        llama_cpp.llama_sampler_accept(grammar, token)
        return token

    def _resample(self, request: _Request) -> int | None:
        """Grammar, then the chain, over every token of the row's logits (the rejected-token path)."""
        n_vocab = self._n_vocab
        if self._candidates is None:
            self._candidates = (llama_cpp.llama_token_data * n_vocab)()
            self._candidate_view = np.ctypeslib.as_array(self._candidates)
            self._candidate_ids = np.arange(n_vocab, dtype=np.int32)
        view = self._candidate_view
        assert view is not None
        logits = llama_cpp.llama_get_logits_ith(self._ctx, request.row)
        # Samplers sort and truncate the array in place, so every field is rewritten each time.
        view["id"] = self._candidate_ids
        view["logit"] = np.ctypeslib.as_array(logits, shape=(n_vocab,))
        view["p"] = 0.0
        candidates = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._candidates, llama_cpp.llama_token_data_p),
            size=n_vocab,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(request.grammar, ctypes.byref(candidates))
        llama_cpp.llama_sampler_apply(request.sampler, ctypes.byref(candidates))
        selected = candidates.selected
        if not 0 <= selected < candidates.size:
            return None
        # Samplers may repoint `data`, so the choice is read through the array, not our buffer.
        chosen = candidates.data[selected]
        if chosen.logit == float("-inf"):
            return None
        return int(chosen.id)

    def _deliver(self, request: _Request, token: int) -> bool:
        """Hand one sampled token to the request; True when the request is finished."""
        request.produced += 1
        request.pending += 1
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            request.emit(TokenDelta("", request.pending, "stop"))
            return True
        text = request.decoder.decode(self._piece(token))
        if request.produced >= request.budget:
            # An incomplete trailing character is dropped rather than sent broken.
            request.emit(TokenDelta(text, request.pending, "length"))
            return True
        if text:
            request.emit(TokenDelta(text, request.pending))
            request.pending = 0
        request.next_token = token
        return False

    def _fill(self, rows: Sequence[tuple[int, int, int, bool]]) -> None:
        batch = self._batch
        batch.n_tokens = len(rows)
        for i, (token, position, slot, logits) in enumerate(rows):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = slot
            batch.logits[i] = logits

    def _finish(self, request: _Request, *, failed: bool = False) -> None:
        if failed:
            request.emit(None)
        if request.sampler is not None:
            llama_cpp.llama_sampler_free(request.sampler)
            request.sampler = None
        if request.grammar is not None:
            llama_cpp.llama_sampler_free(request.grammar)
            request.grammar = None
        if not request.done.done():
            request.done.set_result(None)


class _BadGrammar(Exception):
    """The request's GBNF grammar did not parse."""


def _make_sampler(vocab: Any, params: SamplingParams) -> tuple[Any, Any]:
    """Per request: plain OpenAI temperature/top_p sampling chain, and the grammar sampler or None.

    The grammar stays outside the chain: `_sample` checks the chain's pick against it lazily.
    """
    grammar = None
    if params.grammar is not None:
        grammar = llama_cpp.llama_sampler_init_grammar(vocab, params.grammar.encode("utf-8"), b"root")
        if not grammar:
            raise _BadGrammar
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if params.temperature < _GREEDY_BELOW:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(_seed(params.seed)))
    return chain, grammar


def _quiet_llama_logs() -> None:
    """llama.cpp logs every tensor at load; keep only its errors unless someone asked for more."""
    llama_logger = logging.getLogger("llama-cpp-python")
    if llama_logger.level == logging.NOTSET:
        llama_logger.setLevel(logging.ERROR)


def _seed(seed: int | None) -> int:
    if seed is None:
        return random.randrange(_RANDOM_SEED)
    seed %= 2**32
    return seed - 1 if seed == _RANDOM_SEED else seed
