"""The pipeline's verdict stage: FP32 and MPQ offline on the synthetic verdict corpora and, with
``--real-speech``, on a manifest of people's speech with the general LM (``speechmpq.jobs.verdicts``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from speechmpq.jobs.evaluation import write_json
from speechmpq.jobs.verdict_corpora import CORPORA as VERDICT_CORPORA
from speechmpq.jobs.verdict_corpora import SPLITS as VERDICT_ROLE_SPLITS

if TYPE_CHECKING:
    from speechmpq.jobs.pipeline import PipelineConfig

# verdict corpora (OUT/data/NAME, jobs/verdict_corpora.py), each pooled over its splits
VERDICT_SPLITS = VERDICT_ROLE_SPLITS["test"]  # the pipeline judges on the test verdict corpora

REAL_SPEECH = "real-speech"  # the verdict corpus of --real-speech


def find_real_lm(cfg: PipelineConfig) -> Path | None:
    """The general LM of the real-speech verdicts (None: greedy only)."""
    from speechmpq.errors import SpeechmpqError

    if cfg.real_lm == "none":
        return None
    if cfg.real_lm == "auto":
        found = cfg.model.parent / "en-us.lm.npz"
        return found if found.is_file() else None
    if not Path(cfg.real_lm).is_file():
        raise SpeechmpqError(f"{cfg.real_lm}: no such LM file")
    return Path(cfg.real_lm)


def run_verdicts(cfg: PipelineConfig, onnx_files: dict, lm: Path | None, progress: bool) -> dict:
    """FP32 and MPQ offline on the verdict corpora (each pooled over its splits), greedy and with the
    LM; MPQ judged against FP32 decoded the same way. Skipped when OUT/verdicts/verdicts.json exists."""
    from speechmpq.datasets import read_dataset
    from speechmpq.jobs.verdicts import decode_sets, judge, lossless_everywhere
    from speechmpq.runtime import DecoderConfig

    path = cfg.out / "verdicts" / "verdicts.json"
    if path.exists():
        return json.loads(path.read_text())
    sets, pools = {}, {}
    for name in VERDICT_CORPORA:
        pools[name] = [f"{name}/{split}" for split in VERDICT_SPLITS]
        for split in VERDICT_SPLITS:
            sets[f"{name}/{split}"] = read_dataset(cfg.out / "data" / name / split)
    decoders = {"greedy": DecoderConfig("greedy")}
    if lm:
        decoders["lm"] = DecoderConfig("lm", lm=str(lm))
    tsv_root = path.parent / "tsv"
    models = {"fp32": onnx_files["fp32"], "mpq": onnx_files["mpq"]}
    results, seconds = decode_sets(models, sets, decoders, tsv_root, pools, threads=cfg.threads or 2,
                                   progress=progress)
    verdicts = judge(tsv_root, "fp32", "mpq", list(pools), list(decoders))
    report = {"results": results, "decode_seconds": seconds, "verdicts": verdicts,
              "lm": str(lm) if lm else None}
    if cfg.real_speech is not None:  # its own LM: the grammar's LM knows none of its words
        real_lm = find_real_lm(cfg)
        if real_lm is None and cfg.real_lm == "auto":
            print(f"note: no {cfg.model.parent / 'en-us.lm.npz'}: real speech is judged greedy only (make it "
                  "with `speechmpq lm --from-pocketsphinx --out models/en-us.lm.npz`)", file=sys.stderr)
        decoders = {"greedy": DecoderConfig("greedy")}
        if real_lm:
            decoders["lm"] = DecoderConfig("lm", lm=str(real_lm), lm_weight=cfg.real_lm_weight,
                                           word_score=cfg.real_word_score)
        real = {REAL_SPEECH: read_dataset(cfg.real_speech)}
        found, taken = decode_sets(models, real, decoders, tsv_root, {REAL_SPEECH: [REAL_SPEECH]},
                                   threads=cfg.threads or 2, progress=progress)
        for name in models:
            results[name].update(found[name])
            seconds[name].update(taken[name])
        verdicts.update(judge(tsv_root, "fp32", "mpq", [REAL_SPEECH], list(decoders)))
        report["real_speech"] = {"manifest": str(cfg.real_speech), "lm": str(real_lm) if real_lm else None,
                                 "lm_weight": cfg.real_lm_weight, "word_score": cfg.real_word_score}
    report["lossless"] = lossless_everywhere(verdicts)
    write_json(path, report)
    return report
