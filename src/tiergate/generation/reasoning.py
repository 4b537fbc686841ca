"""Split a reasoning model's `<think>…</think>` text from its answer, as it streams.

reasoning_format (spec §8.4): raw keeps the tags in the content; parsed moves the thinking into
`message.reasoning` (and `delta.reasoning` when streaming); hidden drops it. Whatever the format, the
tokens spent thinking are counted so usage can report `reasoning_tokens`.

Some chat templates open the think block themselves (the prompt ends in `<think>`); then the output
starts inside it, which `starts_inside` tells the splitter.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FORMATS = ("raw", "parsed", "hidden")


@dataclass(frozen=True)
class Split:
    reasoning: str = ""
    content: str = ""


class ReasoningSplitter:
    """Feed text pieces; get (reasoning, content) back. Partial tags are held until they resolve."""

    def __init__(self, *, starts_inside: bool = False) -> None:
        self._inside = starts_inside
        self._done = False
        self._held = ""
        # The blank lines a model writes after </think> separate, they are not part of the answer.
        self._trim_answer = False

    @property
    def inside(self) -> bool:
        """True while the model is thinking: tokens produced now are reasoning tokens."""
        return self._inside

    def feed(self, piece: str) -> Split:
        buffer = self._held + piece
        reasoning: list[str] = []
        content: list[str] = []
        while buffer:
            if self._inside:
                end = buffer.find(THINK_CLOSE)
                if end >= 0:
                    reasoning.append(buffer[:end])
                    buffer = buffer[end + len(THINK_CLOSE) :]
                    self._inside, self._done, self._trim_answer = False, True, True
                    continue
                keep = _partial_suffix(buffer, THINK_CLOSE)
                reasoning.append(buffer[: len(buffer) - keep])
                buffer = buffer[len(buffer) - keep :]
                break
            if self._done:
                if self._trim_answer:
                    buffer = buffer.lstrip()
                    self._trim_answer = not buffer
                content.append(buffer)
                buffer = ""
                break
            # Before any thinking: only leading whitespace may precede the opening tag.
            stripped = buffer.lstrip()
            if stripped.startswith(THINK_OPEN):
                buffer = stripped[len(THINK_OPEN) :]
                self._inside = True
                continue
            if THINK_OPEN.startswith(stripped):
                break  # could still become <think>
            self._done = True
        self._held = buffer
        return Split("".join(reasoning), "".join(content))

    def flush(self) -> Split:
        held, self._held = self._held, ""
        if self._inside:
            return Split(reasoning=held)
        return Split(content=held)


def _partial_suffix(buffer: str, tag: str) -> int:
    for length in range(min(len(tag) - 1, len(buffer)), 0, -1):
        if buffer.endswith(tag[:length]):
            return length
    return 0
