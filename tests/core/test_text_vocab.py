import numpy as np
import pytest

from speechmpq.text import normalize_transcript, number_to_words, ordinal_to_words
from speechmpq.vocab import VOCAB, ctc_greedy_decode, encode, vocab_dict


def test_vocab_is_the_wav2vec2_base_100h_character_set():
    assert len(VOCAB) == 32 and VOCAB[0] == "<pad>" and VOCAB[4] == "|"
    assert "".join(VOCAB[5:]) == "ETAONIHSRDLUMWCFGYPBVK'XJQZ"


@pytest.mark.parametrize(("number", "words"), [
    (0, "ZERO"), (13, "THIRTEEN"), (21, "TWENTY ONE"), (100, "ONE HUNDRED"),
    (1984, "ONE THOUSAND NINE HUNDRED EIGHTY FOUR"), (1000000, "ONE MILLION"),
])  # fmt: skip
def test_number_to_words(number, words):
    assert number_to_words(number) == words


def test_ordinals_and_normalization():
    assert ordinal_to_words(21) == "TWENTY FIRST" and ordinal_to_words(40) == "FORTIETH"
    text = "Don't stop -- it's the 2nd time in 1984,  really?\u2019"
    assert normalize_transcript(text) == (
        "DON'T STOP IT'S THE SECOND TIME IN ONE THOUSAND NINE HUNDRED EIGHTY FOUR REALLY")


@pytest.mark.parametrize(("text", "expected"), [
    # grouped numbers are read as one number, not digit group by digit group
    ("1,200 people", "ONE THOUSAND TWO HUNDRED PEOPLE"),
    ("12,345,678 stars", "TWELVE MILLION THREE HUNDRED FORTY FIVE THOUSAND SIX HUNDRED "
                         "SEVENTY EIGHT STARS"),
    ("in 1984, they", "IN ONE THOUSAND NINE HUNDRED EIGHTY FOUR THEY"),  # a comma, not a group
    ("1, 2, 3", "ONE TWO THREE"),
    # decimals: the point is read, and the digits after it one by one
    ("2.5 cups", "TWO POINT FIVE CUPS"),
    ("pi is 3.14", "PI IS THREE POINT ONE FOUR"),
    ("1,250.75 dollars", "ONE THOUSAND TWO HUNDRED FIFTY POINT SEVEN FIVE DOLLARS"),
    ("it ended in 1984.", "IT ENDED IN ONE THOUSAND NINE HUNDRED EIGHTY FOUR"),
    # accented letters keep their base letter instead of splitting the word
    ("caf\u00e9 na\u00efve", "CAFE NAIVE"),
    ("Fran\u00e7ois \u00c5ngstr\u00f6m", "FRANCOIS ANGSTROM"),
    ("so\u2014said the caf\u00e9\u2019s owner", "SO SAID THE CAFE'S OWNER"),
])  # fmt: skip
def test_normalization_of_grouped_numbers_decimals_and_accents(text, expected):
    assert normalize_transcript(text) == expected


def test_ctc_greedy_decode_merges_repeats_and_drops_blanks():
    ids = vocab_dict()
    frames = [0, ids["H"], ids["H"], 0, ids["I"], ids["|"], ids["|"], 0, ids["O"], 0, ids["O"],
              ids["<unk>"], 0]  # fmt: skip
    assert ctc_greedy_decode(np.array(frames)) == "HI OO"
    assert ctc_greedy_decode(np.array([], dtype=int)) == ""


def test_encode_roundtrip_through_decoder():
    text = "IT'S A TEST"
    labels = encode(text)
    # Insert a blank between every label so repeats survive CTC merging.
    frames = [x for label in labels for x in (label, 0)]
    assert ctc_greedy_decode(np.array(frames)) == text
