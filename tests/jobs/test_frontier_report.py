"""The frontier report: lossless means all four verdicts, a trained plan equal to round to nearest is
counted and named as RTN, the headline ratio compares one-stage with the best peer, the files appear."""

import json

import pytest

from speechmpq.jobs.frontier import CORPORA, DECODERS, FrontierConfig, System, default_systems
from speechmpq.jobs.frontier_report import headline, lossless, shown_family, shown_name, write_report


def _verdicts(worse=()):
    return {c: {d: {"utterances": 1500, "wer_reference": 0.5,
                    "wer_candidate": 0.51 if (c, d) in worse else 0.5,
                    "p_value": 0.001 if (c, d) in worse else 0.6, "bootstrap_interval": [-0.01, 0.02],
                    "lossless": (c, d) not in worse} for d in DECODERS} for c in CORPORA}


def _record(name, family, stored, worse=(), stats=None, settings=None):
    layer_bits = {f"wav2vec2.encoder.layers.{i}.attention.q_proj": 2 for i in range(2)}
    return {"name": name, "family": family, "stored_bits_per_weight": stored, "average_bits": stored - 0.1,
            "compression_seconds": 10.0, "settings": settings or {}, "label": name, "layer_bits": layer_bits,
            "verdicts": _verdicts(worse), **({"stats": stats} if stats else {}),
            "results": {c: {d: {"wer": 0.5} for d in DECODERS} for c in CORPORA}}


SYSTEMS = {
    "fp32": {"name": "fp32", "family": "fp32",
             "results": {c: {d: {"wer": 0.5} for d in DECODERS} for c in CORPORA}},
    "ort-a": _record("ort-a", "ort", 4.25),
    "ort-b": _record("ort-b", "ort", 3.0, worse=[("heldout-text", "greedy")]),
    "mix": _record("mix", "ort", 3.8, settings={"mix": {}}),
    "one-a": _record("one-a", "one-stage", 3.2, stats={"equals_rtn": False,
                                                       "bit_histogram": {"2": 0.5, "4": 0.5},
                                                       "step_movement": {"median": 0.1, "max": 0.5},
                                                       "codes_differ_from_rtn": 0.2}),
    "one-rtn": _record("one-rtn", "one-stage", 2.9, stats={"equals_rtn": True, "bit_histogram": {"4": 1.0},
                                                           "step_movement": {"median": 0.0, "max": 0.0},
                                                           "codes_differ_from_rtn": 0.0}),
}


def test_lossless_needs_all_four_verdicts():
    assert lossless(SYSTEMS["ort-a"]) and not lossless(SYSTEMS["ort-b"])


def test_a_plan_equal_to_rtn_is_named_and_counted_as_rtn():
    assert shown_family(SYSTEMS["one-rtn"]) == "rtn" and "= RTN" in shown_name(SYSTEMS["one-rtn"])
    assert shown_family(SYSTEMS["mix"]) == "hand mix"


def test_headline_ratio_is_best_peer_over_one_stage():
    top = headline(SYSTEMS)
    assert top["lowest_lossless"]["one-stage"]["system"] == "one-a"  # one-rtn counts as rtn
    assert top["best_peer"]["system"] == "one-rtn"  # the lowest lossless peer is that RTN plan
    assert top["one_stage_over_best_peer"] == pytest.approx(2.9 / 3.2)


def test_write_report_writes_table_json_and_plots(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    dev = {"role": "dev", "chosen_on": None, "systems": SYSTEMS}
    (runs / "verdicts_dev.json").write_text(json.dumps(dev))
    paths = write_report(runs, tmp_path / "frontier", "speechmpq frontier ...", machine="test machine")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    text = (tmp_path / "frontier.md").read_text()
    assert "one-rtn (= RTN of its plan)" in text and "Dev sets (these choose)" in text
    assert "Test sets" not in text


def test_configs_refuse_a_test_role_without_its_dev_choice(tmp_path):
    with pytest.raises(ValueError, match="chosen_on"):
        FrontierConfig(model=tmp_path, train=tmp_path, sets=tmp_path, role="test", out=tmp_path, lm=tmp_path)
    with pytest.raises(ValueError, match="distinct"):
        FrontierConfig(model=tmp_path, train=tmp_path, sets=tmp_path, role="dev", out=tmp_path, lm=tmp_path,
                       systems=[System("a", "rtn"), System("a", "ort")])
    assert len({s.name for s in default_systems()}) == len(default_systems())


def test_the_papers_setting_compares_per_tensor_code_bits():
    systems = {
        "u": {**_record("u", "uniform", 4.1), "average_bits": 4.0,
              "settings": {"granularity": "per-tensor"}},
        "o": {**_record("o", "one-stage", 3.1), "average_bits": 2.0,
              "settings": {"granularity": "per-tensor"}},
        "g": {**_record("g", "one-stage", 2.5), "average_bits": 1.5,
              "settings": {"granularity": "per-group"}},
    }
    paper = headline(systems)["paper_setting"]
    assert paper["lowest_lossless"]["one-stage"]["system"] == "o"  # per-group plans are not the paper's
    assert paper["ratios"] == {"one_stage_over_uniform": pytest.approx(2.0)}
