"""Split a reasoning model's `<think>…</think>` text from its answer, as it streams.

reasoning_format (spec §8.4): raw keeps the tags in the content; parsed moves the thinking into
`message.reasoning` (and `delta.reasoning` when streaming); hidden drops it. Whatever the format, the
tokens spent thinking are counted so usage can report `reasoning_tokens`.

Some chat templates open the think block themselves (the prompt ends in `<think>`); then the output
starts inside it, which `starts_inside` tells the splitter and `think_grammar`. Which of the two
holds is only known once the prompt is templated, so the grammar is assembled from the plan then.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate.generation.json_schema import GrammarBuilder, literal

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
FORMATS = ("raw", "parsed", "hidden")


def think_grammar(answer: str | None, *, starts_inside: bool, skip: bool) -> str | None:
    """The answer's grammar with room for the think block a reasoning model writes first.

    `answer` is a rendered grammar (None: free text). Outside a block the model may open one; inside
    (the template opened it) it must close it before the answer. `skip` (reasoning_effort "none")
    closes an empty block at once, which is how a reasoning model is told not to think.
    """
    if answer is None and not skip:
        return None  # free text: the splitter copes with whatever the model writes
    b = GrammarBuilder()
    gap = b.add("think-gap", "[ \\t\\n]{0,4}")
    if answer is None:
        reply, rules = b.add("think-free", "[\\x01-\\U0010FFFF]*"), ""
    else:
        head, _, rules = answer.partition("\n")
        reply = b.add("think-answer", head.removeprefix("root ::= "))
    close = f"{literal(THINK_CLOSE)} {gap} {reply}"
    if skip:
        root = f'"\\n"{{0,2}} {close}' if starts_inside else f'{literal(THINK_OPEN)} "\\n"{{0,2}} {close}'
    else:
        body = b.text_without("think-body", THINK_CLOSE)
        block = f"{body} {close}"
        root = block if starts_inside else f"({literal(THINK_OPEN)} {block}) | {reply}"
    return b.render(root, ws=False) + rules


@dataclass(frozen=True)
class Split:
    reasoning: str = ""
    content: str = ""


class ReasoningSplitter:
    """Feed text pieces; get (reasoning, content) back. Partial tags are held until they resolve."""

    def __init__(self, *, starts_inside: bool = False, answering: bool = False) -> None:
        """`answering`: a prefill already began the answer, so no think block comes."""
        self._inside = starts_inside and not answering
        self._done = answering
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
