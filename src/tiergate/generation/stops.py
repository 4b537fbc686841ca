"""Stop sequences over a stream of text pieces, for any engine.

A stop string may span many tokens, so text that could be the start of one is held back until the
next piece shows whether it completes. Output never contains a stop string, streamed or not.

Which stop wins when several occur: the one that *completes first* (smallest end offset), ties going to
the one that starts first. That is what a token-by-token generator would see, and it makes the result
independent of how the text happens to be split into pieces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StopMatch:
    """A completed stop: `text` is what may be emitted before it; `stop` is the string that matched."""

    text: str
    stop: str


class StopMatcher:
    """Feed text pieces in order; get back the text that is safe to emit now.

    >>> m = StopMatcher(["</s>"])
    >>> m.feed("Hello <"), m.feed("/s> world")
    ('Hello ', StopMatch(text='', stop='</s>'))
    """

    def __init__(self, stops: Iterable[str]) -> None:
        # Empty strings would match everywhere; the API treats them as absent.
        self._stops: tuple[str, ...] = tuple(dict.fromkeys(s for s in stops if s))
        self._held = ""
        self._stopped: StopMatch | None = None

    @property
    def stops(self) -> tuple[str, ...]:
        return self._stops

    @property
    def stopped(self) -> StopMatch | None:
        """The match that ended the stream, once one has."""
        return self._stopped

    def feed(self, piece: str) -> str | StopMatch:
        """Return safe text, or a StopMatch when a stop string completed (feed nothing after that)."""
        if self._stopped is not None:
            raise RuntimeError("StopMatcher already stopped")
        buffer = self._held + piece
        match = self._earliest_completed(buffer)
        if match is not None:
            start, stop = match
            self._held = ""
            self._stopped = StopMatch(buffer[:start], stop)
            return self._stopped
        keep = self._partial_suffix_length(buffer)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """The stream ended without a stop: release what was held back."""
        held, self._held = self._held, ""
        return held

    def _earliest_completed(self, buffer: str) -> tuple[int, str] | None:
        best: tuple[int, int, str] | None = None  # (end, start, stop)
        for stop in self._stops:
            start = buffer.find(stop)
            if start < 0:
                continue
            candidate = (start + len(stop), start, stop)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        return None if best is None else (best[1], best[2])

    def _partial_suffix_length(self, buffer: str) -> int:
        """Length of the longest suffix of `buffer` that is a proper prefix of some stop."""
        longest = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:length]):
                    longest = length
                    break
        return longest


def apply_stops(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Whole-text form (non-streaming): the text before the first stop to complete, and that stop."""
    matcher = StopMatcher(stops)
    result = matcher.feed(text)
    if isinstance(result, StopMatch):
        return result.text, result.stop
    return result + matcher.flush(), None
