"""StopMatcher: stop strings never leak, whatever the split of the text into pieces."""

from __future__ import annotations

import itertools
import random

import pytest

from tiergate.generation.stops import StopMatch, StopMatcher, apply_stops


def reference(text: str, stops: list[str]) -> tuple[str, str | None]:
    """Brute force, character by character: stop as soon as the text seen so far ends with a stop."""
    for end in range(1, len(text) + 1):
        # Among stops completing at this end, the longest one starts first.
        for stop in sorted((s for s in stops if s), key=len, reverse=True):
            if text[:end].endswith(stop):
                return text[: end - len(stop)], stop
    return text, None


def run_pieces(pieces: list[str], stops: list[str]) -> tuple[str, str | None, list[str]]:
    matcher = StopMatcher(stops)
    emitted: list[str] = []
    for piece in pieces:
        result = matcher.feed(piece)
        if isinstance(result, StopMatch):
            emitted.append(result.text)
            return "".join(emitted), result.stop, emitted
        emitted.append(result)
    emitted.append(matcher.flush())
    return "".join(emitted), None, emitted


def all_splits(text: str) -> list[list[str]]:
    """Every way of cutting `text` into pieces (2^(n-1)); keep texts short."""
    splits = []
    for cuts in itertools.product([False, True], repeat=max(len(text) - 1, 0)):
        pieces, start = [], 0
        for i, cut in enumerate(cuts, start=1):
            if cut:
                pieces.append(text[start:i])
                start = i
        pieces.append(text[start:])
        splits.append(pieces)
    return splits


def test_stop_string_spanning_many_pieces_is_cut_and_never_emitted() -> None:
    text, stop, emitted = run_pieces(["The answer", " is 4", "2.", "\n\n", "#", "##", " Next"], ["\n\n###"])
    assert text == "The answer is 42."
    assert stop == "\n\n###"
    assert all("#" not in part for part in emitted)


def test_text_without_stops_passes_through_and_flush_releases_the_held_prefix() -> None:
    matcher = StopMatcher(["END"])
    assert matcher.feed("hello E") == "hello "
    assert matcher.feed("N") == ""
    assert matcher.feed("d") == "ENd"
    assert matcher.feed(" E") == " "
    assert matcher.flush() == "E"
    assert matcher.stopped is None


def test_only_a_possible_stop_prefix_is_held_back() -> None:
    matcher = StopMatcher(["abc"])
    assert matcher.feed("xxab") == "xx"
    assert matcher.feed("x") == "abx"


def test_stop_found_inside_one_piece_emits_text_before_it() -> None:
    matcher = StopMatcher(["STOP"])
    result = matcher.feed("one two STOP three")
    assert result == StopMatch("one two ", "STOP")
    assert matcher.stopped == result
    with pytest.raises(RuntimeError):
        matcher.feed("more")


def test_first_stop_to_complete_wins_over_one_that_started_earlier() -> None:
    # "cd" completes at offset 4, before "abcdef" could; a char-by-char stream would stop there.
    assert apply_stops("abcdef", ["abcdef", "cd"]) == ("ab", "cd")


def test_empty_stop_strings_are_ignored() -> None:
    assert apply_stops("hello", ["", "zz"]) == ("hello", None)


def test_stop_at_the_very_start_emits_nothing() -> None:
    assert apply_stops("<|end|>rest", ["<|end|>"]) == ("", "<|end|>")


ADVERSARIAL = [
    ("aaab", ["aab"]),
    ("abababc", ["ababc"]),
    ("abcabd", ["abd", "cab"]),
    ("x</s/s>y", ["</s>", "s>"]),
    ("mississippi", ["issip", "ssipp", "pi"]),
    ("ééé€𝄞x", ["é€", "𝄞"]),
    ("aaaaaa", ["aaaa", "aaa"]),
    ("no stop here", ["zz", "qq", "yy", "ww"]),
    ("abcab", ["cabx", "bca"]),
    ("```json\n{}```", ["```"]),
]


@pytest.mark.parametrize(("text", "stops"), ADVERSARIAL)
def test_every_split_gives_the_same_result_as_the_char_by_char_reference(text: str, stops: list[str]) -> None:
    expected = reference(text, stops)
    for pieces in all_splits(text):
        out, stop, _ = run_pieces(pieces, stops)
        assert (out, stop) == expected, pieces
        for stop_string in filter(None, stops):
            assert stop_string not in out


@pytest.mark.parametrize("seed", range(40))
def test_random_texts_stops_and_splits_match_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab\n#é"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    stops = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 4))
    ]
    expected = reference(text, stops)
    for _ in range(30):
        pieces, start = [], 0
        while start < len(text):
            size = rng.randint(0, 6)  # empty pieces happen (held-back tokens) and must be harmless
            pieces.append(text[start : start + size])
            start += size
        out, stop, _ = run_pieces(pieces, stops)
        assert (out, stop) == expected, (text, stops, pieces)
        assert not any(s in out for s in stops)


def test_streamed_parts_never_contain_a_stop_even_across_their_boundaries() -> None:
    stops = ["\nUser:"]
    text = "Sure.\nUse it.\nUser: hi"
    for pieces in ([text[i : i + 1] for i in range(len(text))], [text[:6], text[6:15], text[15:]]):
        out, stop, emitted = run_pieces(pieces, stops)
        assert out == "Sure.\nUse it."
        assert stop == "\nUser:"
        assert "\nUser:" not in "".join(emitted)
