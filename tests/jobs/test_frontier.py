"""The frontier runner end to end on a tiny model and corpus: an onnxruntime peer, our round to
nearest and a quantize run are built, judged against FP32 on the verdict sets, and a second call
resumes without redoing anything."""

import json
from pathlib import Path

import pytest

from speechmpq.cli import main
from speechmpq.jobs.frontier import FrontierConfig, System, run_frontier
from speechmpq.train.models import build_model, save_model

LM = Path(__file__).resolve().parents[2] / "models" / "lm.arpa.gz"


@pytest.fixture(scope="module")
def verdict_sets(tiny_corpus, tmp_path_factory):
    sets = tmp_path_factory.mktemp("sets")
    for corpus in ("grammar-text", "heldout-text"):
        for split, source in (("dev-clean", "test-clean"), ("dev-other", "test-other")):
            (sets / corpus).mkdir(exist_ok=True)
            (sets / corpus / split).symlink_to(tiny_corpus / source)
    return sets


SYSTEMS = [System("ort-default-4b-g32", "ort", {"algo": "default", "bits": 4, "block": 32}),
           System("rtn-pc-4b", "rtn", {"bits": 4, "granularity": "per-channel"}),
           System("uniform-g16-2b", "uniform", {"method": "uniform", "bits": 2, "granularity": "per-group",
                                                 "group-size": 16, "steps": 2, "batch-seconds": 16,
                                                 "workers": 0})]


def test_every_family_is_built_judged_and_resumed(tiny_corpus, verdict_sets, tmp_path):
    model_dir = save_model(build_model("tiny", seed=4), tmp_path / "fp")
    cfg = FrontierConfig(model=model_dir, train=tiny_corpus / "train", sets=verdict_sets, role="dev",
                         out=tmp_path / "runs", lm=LM, systems=SYSTEMS)
    done = run_frontier(cfg, log=lambda message: None)
    systems = done["systems"]
    assert set(systems) == {"fp32"} | {s.name for s in SYSTEMS}  # the reference's own WER is kept
    assert {"grammar-text", "heldout-text"} <= set(systems["fp32"]["results"])
    for record in (r for name, r in systems.items() if name != "fp32"):
        assert set(record["verdicts"]) == {"grammar-text", "heldout-text"}
        assert all(set(v) == {"greedy", "lm"} for v in record["verdicts"].values())
        assert (tmp_path / "runs" / record["name"] / "model.onnx").is_file()
    assert 4 + 32 / 32 <= systems["ort-default-4b-g32"]["stored_bits_per_weight"] <= 4 + 40 / 32
    assert systems["rtn-pc-4b"]["average_bits"] == 4
    assert systems["uniform-g16-2b"]["stored_bits_per_weight"] == pytest.approx(2 + 32 / 16)
    assert set(systems["uniform-g16-2b"]["stats"]) >= {"bit_histogram", "codes_differ_from_rtn", "equals_rtn"}
    before = (tmp_path / "runs" / "verdicts_dev.json").stat().st_mtime_ns
    run_frontier(cfg, log=lambda message: None)  # nothing left to do
    assert (tmp_path / "runs" / "verdicts_dev.json").stat().st_mtime_ns == before
    assert json.loads((tmp_path / "runs" / "verdicts_dev.json").read_text())["role"] == "dev"


def test_the_command_refuses_an_unknown_system_in_one_line(tmp_path, capsys):
    code = main(["frontier", "--model", str(tmp_path), "--train", str(tmp_path), "--sets", str(tmp_path),
                 "--role", "dev", "--lm", str(LM), "--out", str(tmp_path / "o"), "--only", "nope"])
    assert code == 1 and "no system named" in capsys.readouterr().err


def test_a_manifest_is_judged_as_one_real_speech_corpus(tiny_corpus, verdict_sets, tmp_path):
    from speechmpq.datasets import read_dataset
    from speechmpq.jobs.frontier import REAL_SPEECH
    from speechmpq.jobs.frontier_report import write_report

    manifest = tmp_path / "real.tsv"
    utterances = read_dataset(tiny_corpus / "test-clean")[:3]
    manifest.write_text("".join(f"{u.path}\t{u.transcript}\n" for u in utterances))
    model_dir = save_model(build_model("tiny", seed=4), tmp_path / "fp")
    cfg = FrontierConfig(model=model_dir, train=tiny_corpus / "train", sets=manifest, role="dev",
                         out=tmp_path / "runs", lm=LM, systems=SYSTEMS[1:2], lm_weight=0.3, word_score=1.0)
    done = run_frontier(cfg, log=lambda message: None)
    assert done["corpora"] == [REAL_SPEECH] and done["lm"] == {"path": str(LM), "lm_weight": 0.3,
                                                               "word_score": 1.0}
    assert set(done["systems"]["rtn-pc-4b"]["verdicts"]) == {REAL_SPEECH}
    assert done["systems"]["fp32"]["results"][REAL_SPEECH]["greedy"]["utterances"] == 3
    written = write_report(tmp_path / "runs", tmp_path / "report", "frontier ...", machine="test")
    assert all(path.is_file() for path in written)
    assert f"{REAL_SPEECH} greedy" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="was judged on"):  # the run folder judged on other corpora
        run_frontier(FrontierConfig(model=model_dir, train=tiny_corpus / "train", sets=verdict_sets,
                                    role="dev", out=tmp_path / "runs", lm=LM), log=lambda m: None)
