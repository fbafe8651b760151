"""The shared tokenizer: counting, encoding and decoding agree."""

from __future__ import annotations

import random

import pytest
from sparkstack_common.tokens import (
    TokenIds,
    count_tokens,
    count_tokens_bytes,
    cut_at_tokens,
    decode,
    encode,
)

SAMPLES = [
    "def getHTTPResponse_code(self, x):\n    return x  # done\n",
    "Ünïcödé text — with “quotes” and 漢字.\r\n\tindented\n",
    "snake_case_name = CamelCaseName + ALL_CAPS_123\n",
    "trailing spaces   ",
    "\n\n\n",
    "a",
    "",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_encode_decode_round_trip_and_count(text: str) -> None:
    ids = encode(text)
    assert decode(ids) == text
    assert len(ids) == count_tokens(text)


def test_random_texts_agree() -> None:
    rng = random.Random(7)
    alphabet = "abcXYZ019_ \t\n\r.,;:(){}[]<>=+-*/'\"#éß漢🙂"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80)))
        ids = encode(text)
        assert decode(ids) == text
        if text.strip(" \t\r\x0b\x0c"):
            assert len(ids) == count_tokens(text), repr(text)


def test_counts_are_additive_at_line_boundaries() -> None:
    text = "".join(SAMPLES).encode()
    lines = text.splitlines(keepends=True)
    assert sum(count_tokens_bytes(line) for line in lines) == count_tokens_bytes(text)


def test_token_boundaries_resemble_bpe() -> None:
    assert count_tokens("hello world") == 2
    assert count_tokens("getValue") == 2
    assert count_tokens("snake_case") == 2
    assert count_tokens("a.b(c)") == 6
    assert count_tokens("é") == 2  # two UTF-8 bytes, like byte fallback


def test_ids_made_on_demand_are_the_encoded_ids() -> None:
    rng = random.Random(11)
    alphabet = "abcXYZ019_ \t\n\r.,;:(){}[]<>=+-*/'\"#éß漢🙂"
    texts = [*SAMPLES, "   ", "\t \x0b", "\r"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))) for _ in range(300)]
    for text in texts:
        ids, lazy = encode(text), TokenIds(text)
        assert len(lazy) == len(ids), repr(text)  # blank-only text too: one id
        assert lazy == ids and list(lazy) == ids
        k = len(ids) // 2
        assert lazy[:k] == ids[:k] and decode(lazy[:k]) == decode(ids[:k])
        if ids:
            assert lazy[-1] == ids[-1]
        assert decode(lazy) == text


def test_ids_on_demand_are_counted_not_built_for_their_length() -> None:
    lazy = TokenIds("def getHTTPResponse_code(self, x):\n    return x\n")
    assert len(lazy) == len(encode("def getHTTPResponse_code(self, x):\n    return x\n"))
    assert lazy._ids is None  # what makes LightRAG's counting cheap: no ids were made
    assert TokenIds("same") == TokenIds("same") and TokenIds("same") != TokenIds("other")
    assert TokenIds("ab cd") != encode("cd ab") and TokenIds("ab") != "ab"


def test_a_lone_surrogate_is_counted_not_fatal() -> None:
    """Text from a file whose name or content was decoded with surrogateescape."""
    text = "bad \udcff byte"
    ids = encode(text)
    assert len(ids) == count_tokens(text) == len(TokenIds(text))
    assert decode(ids).startswith("bad ") and decode(ids).endswith(" byte")


def test_a_cut_keeps_the_longest_prefix_within_the_budget_and_whole_characters() -> None:
    rng = random.Random(5)
    alphabet = "abXY_ \n.(À漢🙂é"  # À is C3 80: a continuation byte of 0x80
    for _ in range(300):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))).encode()
        budget = rng.randint(0, 12)
        # the longest prefix within the budget, by counting every one (at least one byte)
        longest = max(
            [1] + [n for n in range(1, len(data) + 1) if count_tokens_bytes(data[:n]) <= budget]
        )
        while longest < len(data) and 0x80 <= data[longest] < 0xC0:
            longest += 1  # then to the end of its character
        cut = cut_at_tokens(data, budget)
        assert cut == longest, (data, budget)
        data[:cut].decode()  # whole characters: no error
