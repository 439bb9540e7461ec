"""speechmpq.jobs.verdicts: sets decoded greedy and with the LM, pools, the candidate-vs-reference verdict."""

from pathlib import Path

import pytest

from speechmpq.cli import main
from speechmpq.datasets import read_dataset
from speechmpq.jobs.evaluation import score_utterances, write_rows_tsv
from speechmpq.jobs.verdicts import decode_sets, judge, lossless_everywhere, results_table, verdicts_table
from speechmpq.runtime import DecoderConfig

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo-mpq.onnx"


def test_same_model_twice_is_lossless_with_pooled_rows(tiny_corpus, tmp_path):
    lm = tmp_path / "lm.arpa"
    assert main(["lm", "--text", str(tiny_corpus / "train"), "--order", "2", "--out", str(lm)]) == 0
    sets = {name: read_dataset(tiny_corpus / name) for name in ("test-clean", "test-other")}
    decoders = {"greedy": DecoderConfig("greedy"), "lm": DecoderConfig("lm", lm=str(lm))}
    results, seconds = decode_sets({"a": DEMO, "b": DEMO}, sets, decoders, tmp_path / "tsv",
                                   pools={"both": ["test-clean", "test-other"]}, threads=1, progress=False)
    both = results["a"]["both"]["greedy"]
    assert both["utterances"] == len(sets["test-clean"]) + len(sets["test-other"])
    assert results["a"] == results["b"] and set(seconds["a"]["test-clean"]) == {"greedy", "lm"}
    assert (tmp_path / "tsv" / "b" / "both" / "lm" / "utterances.tsv").is_file()
    verdicts = judge(tmp_path / "tsv", "a", "b", ["both"], ["greedy", "lm"])
    assert lossless_everywhere(verdicts)
    assert verdicts["both"]["lm"]["wer_reference"] == verdicts["both"]["lm"]["wer_candidate"]
    text = "\n".join(results_table(results) + verdicts_table(verdicts))
    assert "| a | both |" in text and "| both | lm |" in text and "| yes |" in text


def test_a_significantly_worse_candidate_is_not_lossless(tiny_corpus, tmp_path):
    utterances = read_dataset(tiny_corpus / "test-clean") + read_dataset(tiny_corpus / "test-other")
    for name, hypotheses in (("ref", [u.transcript for u in utterances]), ("bad", [""] * len(utterances))):
        rows, _ = score_utterances(utterances, hypotheses)
        path = tmp_path / name / "set" / "greedy" / "utterances.tsv"
        path.parent.mkdir(parents=True)
        write_rows_tsv(path, rows)
    verdicts = judge(tmp_path, "ref", "bad", ["set"], ["greedy"])
    verdict = verdicts["set"]["greedy"]
    assert verdict["p_value"] < 0.05 and verdict["lossless"] is False and not lossless_everywhere(verdicts)
    assert verdict["wer_reference"] == 0 and verdict["wer_candidate"] == pytest.approx(1.0)
    assert "| NO |" in "\n".join(verdicts_table(verdicts))


@pytest.mark.parametrize("case, lossless", [("worse", False), ("better", True), ("identical", True)])
def test_uniform_differences_are_judged_by_their_sign(tmp_path, case, lossless):
    """40 utterances, the candidate exactly one word worse (or better, or the same) in each: zero
    variance in MAPSSWE's segment differences; the verdict must still see the direction."""
    from speechmpq.datasets import Utterance

    utterances = [Utterance(f"u{i}", Path(f"u{i}.flac"), "ALPHA BETA GAMMA DELTA") for i in range(40)]
    one_wrong = ["ALPHA BETA GAMMA DELTOID"] * 40
    right = [u.transcript for u in utterances]
    reference, candidate = {"worse": (right, one_wrong), "better": (one_wrong, right),
                            "identical": (one_wrong, one_wrong)}[case]
    for name, hypotheses in (("ref", reference), ("cand", candidate)):
        rows, _ = score_utterances(utterances, hypotheses)
        path = tmp_path / name / "set" / "greedy" / "utterances.tsv"
        path.parent.mkdir(parents=True)
        write_rows_tsv(path, rows)
    verdict = judge(tmp_path, "ref", "cand", ["set"], ["greedy"])["set"]["greedy"]
    assert verdict["lossless"] is lossless
    if case != "identical":
        assert verdict["p_value"] < 1e-6  # the exact sign test over 40 segments
    assert "one-sided α 0.025" in "\n".join(verdicts_table({"set": {"greedy": verdict}}))
