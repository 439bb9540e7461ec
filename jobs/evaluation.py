"""``speechmpq eval``: score a model on a dataset, and compare two scored runs.

Per-utterance results go to ``utterances.tsv`` (id, voice group, reference/hypothesis word and
character counts and errors, reference, hypothesis) and the summary to ``summary.json``; both are
written to a temporary name and renamed.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from speechmpq.datasets import Utterance, corpus_metadata, read_dataset
from speechmpq.errors import SpeechmpqError
from speechmpq.files import atomic_write
from speechmpq.significance import align_words, bootstrap_wer_difference, mapsswe

TSV_COLUMNS = ("utt_id", "group", "ref_words", "word_errors", "ref_chars", "char_errors",
               "reference", "hypothesis")  # fmt: skip


def voice_groups(utterances: list[Utterance]) -> dict[str, str]:
    """utt_id → ``seen``/``unseen`` from a synthetic corpus's ``utterances.tsv``; else ``all``."""
    rows = corpus_metadata(utterances)
    return {u.utt_id: ("seen" if rows[u.utt_id]["seen"] == "1" else "unseen") if u.utt_id in rows
            else "all" for u in utterances}


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def _rates(rows: list[dict]) -> dict:
    words = sum(r["ref_words"] for r in rows)
    chars = sum(r["ref_chars"] for r in rows)
    return {"utterances": len(rows), "ref_words": words,
            "wer": sum(r["word_errors"] for r in rows) / max(words, 1),
            "cer": sum(r["char_errors"] for r in rows) / max(chars, 1)}


def score_utterances(utterances: list[Utterance], hypotheses: list[str]) -> tuple[list[dict], dict]:
    """Per-utterance rows (``TSV_COLUMNS``) and the rates: overall plus one entry per voice group."""
    from speechmpq.scoring import score_pairs

    scored = score_pairs([u.utt_id for u in utterances], [u.transcript for u in utterances],
                         hypotheses)
    groups = voice_groups(utterances)
    rows = [{"utt_id": r.utt_id, "group": groups[r.utt_id], "ref_words": r.ref_words,
             "word_errors": r.word_errors, "ref_chars": r.ref_chars, "char_errors": r.char_errors,
             "reference": r.reference, "hypothesis": r.hypothesis} for r in scored["rows"]]
    rates = {**_rates(rows), "groups": {group: _rates([r for r in rows if r["group"] == group])
                                        for group in sorted(set(groups.values()))}}
    return rows, rates


def write_rows_tsv(path: Path, rows: list[dict]) -> None:
    """The per-utterance rows as the TSV that ``compare_tsv`` reads (written atomically)."""
    lines = ["\t".join(TSV_COLUMNS)] + ["\t".join(str(r[c]) for c in TSV_COLUMNS) for r in rows]
    atomic_write(Path(path), "\n".join(lines) + "\n")


def evaluate(model: Path, data: Path, out: Path | None = None, progress: bool = True,
             table: bool = False, device: str = "cpu", recognizer=None) -> dict:
    """Transcribe ``data`` with ``model`` (a PyTorch model directory, or an exported .onnx file run
    by the runtime's Recognizer with ``recognizer``, a RecognizerConfig: offline by default);
    returns the summary."""
    utterances = read_dataset(data)
    started = time.time()
    if model.is_dir():
        try:
            from speechmpq.train.evaluate import transcribe_torch
            from speechmpq.train.models import feature_settings, load_model, model_vocab
        except ImportError as error:
            raise SpeechmpqError(f"evaluating a PyTorch model directory needs the training extra "
                                 f"({error.name} is missing): pip install 'speechmpq[train]'") from None
        settings = feature_settings(model)
        hypotheses = transcribe_torch(load_model(model).to(device), utterances, progress=progress,
                                      tokens=model_vocab(model), do_normalize=settings["do_normalize"],
                                      attention_mask=settings["return_attention_mask"])
    elif model.suffix == ".onnx":
        hypotheses = transcribe_onnx(model, utterances, recognizer, progress)
    else:
        raise SpeechmpqError(f"{model}: not a model directory or .onnx file")
    rows, rates = score_utterances(utterances, hypotheses)
    groups = rates.pop("groups")
    summary = {"model": str(model), "data": str(data), **rates,
               "seconds": round(time.time() - started, 2), "groups": groups}
    if table:
        print(format_table(rows))
    print(format_summary(summary))
    if out is not None:
        write_rows_tsv(Path(out) / "utterances.tsv", rows)
        write_json(Path(out) / "summary.json", summary)
    return summary


def transcribe_onnx(model: Path, utterances: list[Utterance], config=None,
                    progress: bool = True) -> list[str]:
    """Transcripts through the runtime's Recognizer with ``config`` (a RecognizerConfig; default:
    offline, greedy), one utterance at a time."""
    from tqdm import tqdm

    from speechmpq.audio import load_audio
    from speechmpq.runtime import Recognizer, RecognizerConfig, StreamingConfig

    recognizer = Recognizer(model, config or RecognizerConfig(streaming=StreamingConfig(chunk_ms=0)))
    for warning in recognizer.info.warnings:
        print(f"warning: {warning}")
    rate = recognizer.info.sample_rate
    return [recognizer.transcribe(load_audio(u.path, rate), rate)
            for u in tqdm(utterances, desc="transcribe", unit="utt", disable=not progress)]


def format_table(rows: list[dict]) -> str:
    lines = [f"{'utterance':<16} {'group':<6} {'err/words':>9}  reference → hypothesis"]
    for r in rows:
        lines.append(f"{r['utt_id']:<16} {r['group']:<6} {r['word_errors']:>4}/{r['ref_words']:<4}"
                     f"  {r['reference']}\n{'':<39}→ {r['hypothesis']}")
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    lines = [f"{'set':<8} {'utts':>5} {'words':>6} {'WER %':>7} {'CER %':>7}"]
    parts = [("all", summary)] + list(summary["groups"].items())
    for name, s in parts if len(summary["groups"]) > 1 else parts[:1]:
        lines.append(f"{name:<8} {s['utterances']:>5} {s['ref_words']:>6} {100 * s['wer']:>7.2f} "
                     f"{100 * s['cer']:>7.2f}")
    return "\n".join(lines)


def read_tsv(path: Path) -> dict[str, dict]:
    if not path.is_file():
        raise SpeechmpqError(f"{path}: no such file")
    with open(path) as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = {"utt_id", "reference", "hypothesis"} - set(reader.fieldnames or [])
        if missing:
            raise SpeechmpqError(f"{path}: not a speechmpq eval TSV (missing {sorted(missing)})")
        rows: dict[str, dict] = {}
        for row in reader:
            if row["utt_id"] in rows:
                raise SpeechmpqError(f"{path}: utterance id {row['utt_id']} appears twice")
            rows[row["utt_id"]] = row
        return rows


def compare_tsv(path_a: Path, path_b: Path, seed: int = 0) -> dict:
    """MAPSSWE test and bootstrap interval for B against A on the same utterances."""
    a, b = read_tsv(path_a), read_tsv(path_b)
    if set(a) != set(b):
        raise SpeechmpqError(f"{path_a} and {path_b} cover different utterances "
                             f"({len(set(a) ^ set(b))} not in both)")
    ids = sorted(a)
    for utt_id in ids:
        if a[utt_id]["reference"] != b[utt_id]["reference"]:
            raise SpeechmpqError(f"utterance {utt_id} has different references in the two files")
    refs = [a[i]["reference"] for i in ids]
    hyp_a, hyp_b = [a[i]["hypothesis"] for i in ids], [b[i]["hypothesis"] for i in ids]
    test = mapsswe(refs, hyp_a, hyp_b)
    ref_words = np.array([len(r.split()) for r in refs])
    def errors(hyps):
        out = []
        for ref, hyp in zip(refs, hyps, strict=True):
            alignment = align_words(ref.split(), hyp.split())
            out.append(sum(not c for c in alignment.correct) + sum(alignment.insertions))
        return np.array(out)

    errors_a, errors_b = errors(hyp_a), errors(hyp_b)
    interval = bootstrap_wer_difference(ref_words, errors_a, errors_b, seed=seed)
    return {"a": str(path_a), "b": str(path_b), "utterances": len(ids),
            "wer_a": float(errors_a.sum() / max(ref_words.sum(), 1)),
            "wer_b": float(errors_b.sum() / max(ref_words.sum(), 1)),
            "mapsswe": test, "bootstrap": interval}


def format_comparison(result: dict) -> str:
    test, boot = result["mapsswe"], result["bootstrap"]
    verdict = "SIGNIFICANT" if test["significant"] else "not significant"
    direction = "B worse" if test["mean_difference"] > 0 else "B better"
    low, high = boot["interval"]
    return (f"WER A {100 * result['wer_a']:.2f} %  B {100 * result['wer_b']:.2f} %  "
            f"({result['utterances']} utterances)\n"
            f"MAPSSWE: {test['segments']} segments, W = {test['w']:.3f}, p = {test['p_value']:.4g} "
            f"→ {verdict} at alpha {test['alpha']}" + (f" ({direction})" if test["significant"] else "")
            + f"\nbootstrap {int(100 * boot['level'])} % interval of WER B − A: "
            f"[{100 * low:+.2f}, {100 * high:+.2f}] points")
