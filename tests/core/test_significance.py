"""MAPSSWE and bootstrap checked against hand-computed cases."""

import math

import numpy as np
import pytest

from speechmpq.significance import align_words, bootstrap_wer_difference, mapsswe, segment_errors


def test_alignment_marks_substitution_deletion_and_insertion():
    alignment = align_words(["A", "B", "C", "D"], ["A", "X", "C", "Y", "D", "E"])
    # A ok, B→X substituted, C ok, Y inserted before D, D ok, E inserted at the end.
    assert alignment.correct == [True, False, True, True]
    assert alignment.insertions == [0, 0, 0, 1, 1]


def test_segments_are_cut_at_runs_of_two_words_both_got_right():
    # A errs at B, B errs at F; C D E (three shared correct words) separate two segments.
    assert segment_errors("A B C D E F G", "A X C D E F G", "A B C D E Y G") == [(1, 0), (0, 1)]
    # A single shared correct word (D) is not a boundary: one segment with both errors.
    assert segment_errors("A B C D E", "A X C D E", "A B C Y E") == [(1, 1)]
    # An insertion inside a run of shared correct words breaks that run.
    assert segment_errors("A B C D", "A B Q C D", "A B C D") == [(1, 0)]
    # Identical correct outputs have no segments at all.
    assert segment_errors("A B C", "A B C", "A B C") == []


def test_mapsswe_statistic_by_hand():
    # Five utterances, one segment each; Z = errors_B - errors_A = [1, 1, 1, 0, 2].
    refs = ["A B C D E F"] * 5
    hyp_a = ["A B C D E F", "A B C D E F", "A B C D E F", "X B C D E F", "A B C D E F"]
    hyp_b = ["Q B C D E F", "A B Q D E F", "A B C D E Q", "Y B C D E F", "Q R C D E F"]
    result = mapsswe(refs, hyp_a, hyp_b)
    z = np.array([1, 1, 1, 0, 2], dtype=float)
    w = z.mean() / (z.std(ddof=1) / math.sqrt(5))  # 1.0 / (0.7071 / 2.236) = 3.162
    assert result["segments"] == 5
    assert result["w"] == pytest.approx(w)
    assert result["p_value"] == pytest.approx(math.erfc(w / math.sqrt(2)))
    assert result["significant"] and result["p_value"] < 0.002


def test_mapsswe_symmetric_and_not_significant_for_balanced_errors():
    refs = ["A B C D E F G"] * 4
    hyp_a = ["A X C D E F G", "A B C D E F G", "A X C D E F G", "A B C D E F G"]
    hyp_b = ["A B C D E F G", "A X C D E F G", "A B C D E F G", "A X C D E F G"]
    forward, backward = mapsswe(refs, hyp_a, hyp_b), mapsswe(refs, hyp_b, hyp_a)
    assert forward["mean_difference"] == 0.0 and not forward["significant"]  # Z = +1, -1, +1, -1
    assert forward["p_value"] == pytest.approx(1.0)
    assert backward["w"] == pytest.approx(-forward["w"])


def test_identical_systems_are_not_different():
    refs = ["A B C", "D E F"]
    hyps = ["A X C", "D E"]
    result = mapsswe(refs, hyps, hyps)
    assert result["p_value"] == 1.0 and not result["significant"]


def test_bootstrap_interval_contains_true_difference_and_is_ordered():
    ref_words = np.full(200, 10)
    errors_a = np.ones(200)
    errors_b = np.r_[np.full(100, 2), np.ones(100)]
    result = bootstrap_wer_difference(ref_words, errors_a, errors_b, samples=500, seed=1)
    assert result["wer_difference"] == pytest.approx(0.05)
    low, high = result["interval"]
    assert low < 0.05 < high and low > 0.0


def test_zero_variance_takes_the_sign_test():
    # B makes one extra error in two utterances and is otherwise identical: every segment has
    # Z = +1, the variance is 0; two segments are too few for a sign test to be significant.
    refs = ["A B C D E F"] * 100
    hyp_a = list(refs)
    hyp_b = ["A X C D E F", "A B C D E Y"] + refs[2:]
    result = mapsswe(refs, hyp_a, hyp_b)
    assert result["segments"] == 2 and result["mean_difference"] == 1.0
    assert result["p_value"] == 0.5 and result["test"] == "sign" and not result["significant"]


def test_a_uniformly_worse_system_is_not_called_lossless():
    # 40 segments, the reference makes no error, the candidate one in each: sc_stats would say
    # p = 1 ("no difference"); the sign test says p = 2 * 0.5^40.
    refs = ["A B C D E F"] * 40
    worse = ["A X C D E F"] * 40
    result = mapsswe(refs, list(refs), worse)
    assert result["segments"] == 40 and result["mean_difference"] == 1.0
    assert result["p_value"] == pytest.approx(2 * 0.5 ** 40) and result["significant"]
    assert result["sides"] == 2


def test_insertion_at_utterance_end_and_wider_buffer():
    # An insertion after the last word belongs to the final gap and still counts as an error.
    assert segment_errors("A B C", "A B C D", "A B C") == [(1, 0)]
    # With buffer=3, a run of two shared correct words (C D) no longer separates segments.
    assert segment_errors("A B C D E", "A X C D E", "A B C D Y", buffer=2) == [(1, 0), (0, 1)]
    assert segment_errors("A B C D E", "A X C D E", "A B C D Y", buffer=3) == [(1, 1)]


def test_mapsswe_detects_a_consistently_worse_system_with_varying_segments():
    refs = ["A B C D E F G H"] * 60
    hyp_a = ["A B C D E F G H"] * 40 + ["A X C D E F G H"] * 20
    hyp_b = (["A X C D E F G H"] * 20 + ["A X Y D E F G H"] * 20 + ["A X Y Z E F G H"] * 20)
    result = mapsswe(refs, hyp_a, hyp_b)
    assert result["significant"] and result["mean_difference"] > 0 and result["w"] > 0
    assert mapsswe(refs, hyp_b, hyp_a)["w"] == pytest.approx(-result["w"])
