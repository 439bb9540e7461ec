"""Lossless verdicts with power: WER of several models on several test sets, greedy and with the LM,
and a candidate judged against a reference decoded the same way.

Per model and set, offline logits (one window per utterance) are computed once and decoded by every
decoder asked for (e.g. greedy and lexicon + n-gram LM). Each (model, set, decoder) gets a
per-utterance TSV in the format of ``speechmpq eval`` (so ``speechmpq eval --compare`` reads them);
pools join sets (e.g. test-clean + test-other). ``judge`` gives, per set and decoder, the MAPSSWE
two-sided p and the bootstrap 95 % interval of WER(candidate) - WER(reference); the candidate is
lossless unless it is significantly worse (one-sided alpha 0.025: p < 0.05 with more errors).
Runtime only (numpy + onnxruntime), no torch.
"""

from __future__ import annotations

import time
from pathlib import Path

from speechmpq.datasets import Utterance
from speechmpq.jobs.evaluation import compare_tsv, score_utterances, write_rows_tsv


def _decode(decoder, logits) -> str:
    state = decoder.initial()
    decoder.advance(state, logits)
    return " ".join(decoder.text(state).split())


def decode_sets(models: dict[str, Path], sets: dict[str, list[Utterance]], decoders: dict,
                tsv_root: Path, pools: dict[str, list[str]] | None = None, threads: int = 2,
                progress: bool = True) -> tuple[dict, dict]:
    """``decoders``: name -> ``DecoderConfig``. Returns (results[model][set][decoder] = rates with
    voice groups, decode_seconds[model][set][decoder])."""
    from tqdm import tqdm

    from speechmpq.audio import load_audio
    from speechmpq.runtime import OnnxCTCModel, SessionConfig, build_decoder

    results: dict = {}
    seconds: dict = {}
    for model_name, path in models.items():
        model = OnnxCTCModel(path, SessionConfig(threads=threads))
        info = model.info
        built = {name: build_decoder(config, info.tokens, info.blank_id, info.word_delimiter, path, info)
                 for name, config in decoders.items()}
        kept: dict = {}
        for set_name, utterances in sets.items():
            hypotheses = {name: [] for name in built}
            timing = dict.fromkeys(built, 0.0)
            for utterance in tqdm(utterances, desc=f"{model_name} {set_name}", unit="utt",
                                  disable=not progress, leave=False):
                logits = model.logits(load_audio(utterance.path, info.sample_rate))[0]
                for name, decoder in built.items():
                    began = time.perf_counter()
                    hypotheses[name].append(_decode(decoder, logits))
                    timing[name] += time.perf_counter() - began
            for name in built:
                results.setdefault(model_name, {}).setdefault(set_name, {})[name] = _write(
                    tsv_root / model_name / set_name / name / "utterances.tsv", utterances, hypotheses[name])
                seconds.setdefault(model_name, {}).setdefault(set_name, {})[name] = round(timing[name], 3)
            kept[set_name] = hypotheses
        for pool, members in (pools or {}).items():
            if members == [pool]:  # a corpus of one set (a manifest): its rows are written already
                continue
            utterances = [u for member in members for u in sets[member]]
            for name in built:
                texts = [t for member in members for t in kept[member][name]]
                results[model_name].setdefault(pool, {})[name] = _write(
                    tsv_root / model_name / pool / name / "utterances.tsv", utterances, texts)
    return results, seconds


def _write(path: Path, utterances: list[Utterance], hypotheses: list[str]) -> dict:
    rows, rates = score_utterances(utterances, hypotheses)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_rows_tsv(path, rows)
    return rates


def judge(tsv_root: Path, reference: str, candidate: str, set_names: list[str],
          decoder_names: list[str]) -> dict:
    """verdicts[set][decoder]: the candidate against the reference decoded the same way. "lossless"
    unless MAPSSWE's two-sided p < 0.05 with more errors in the candidate: a one-sided test of
    "worse" at 0.025."""
    verdicts: dict = {}
    for set_name in set_names:
        for name in decoder_names:
            compared = compare_tsv(tsv_root / reference / set_name / name / "utterances.tsv",
                                   tsv_root / candidate / set_name / name / "utterances.tsv")
            test = compared["mapsswe"]
            worse = bool(test["significant"] and test["mean_difference"] > 0)  # mapsswe's alpha: 0.05
            verdicts.setdefault(set_name, {})[name] = {
                "utterances": compared["utterances"], "wer_reference": compared["wer_a"],
                "wer_candidate": compared["wer_b"], "p_value": test["p_value"],
                "bootstrap_interval": compared["bootstrap"]["interval"], "lossless": not worse}
    return verdicts


def lossless_everywhere(verdicts: dict) -> bool:
    return all(v["lossless"] for by_decoder in verdicts.values() for v in by_decoder.values())


def results_table(results: dict) -> list[str]:
    """Markdown: WER/CER per model, set and decoder (greedy and LM side by side when both ran)."""
    decoders = list(next(iter(next(iter(results.values())).values())))
    head = " | ".join(f"{d} WER % | {d} CER %" for d in decoders)
    lines = [f"| model | set | utterances | {head} | by voice ({decoders[-1]} WER %) |",
             "|---|---|---:|" + "---:|" * (2 * len(decoders)) + "---|"]
    for model, sets in results.items():
        for set_name, by_decoder in sets.items():
            cells = " | ".join(f"{100 * by_decoder[d]['wer']:.2f} | {100 * by_decoder[d]['cer']:.2f}"
                               for d in decoders)
            last = by_decoder[decoders[-1]]
            groups = ", ".join(f"{k} {100 * v['wer']:.1f}" for k, v in last["groups"].items())
            lines.append(f"| {model} | {set_name} | {last['utterances']} | {cells} | {groups} |")
    return lines


def verdicts_table(verdicts: dict, reference: str = "FP32", candidate: str = "MPQ") -> list[str]:
    lines = [f"| set | decoder | utterances | {reference} WER % | {candidate} WER % | p | "
             f"interval (points) | lossless (not sig. worse, one-sided α 0.025) |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for set_name, by_decoder in verdicts.items():
        for name, v in by_decoder.items():
            low, high = v["bootstrap_interval"]
            lines.append(f"| {set_name} | {name} | {v['utterances']} | {100 * v['wer_reference']:.2f} | "
                         f"{100 * v['wer_candidate']:.2f} | {v['p_value']:.3f} | [{100 * low:+.2f}, "
                         f"{100 * high:+.2f}] | {'yes' if v['lossless'] else 'NO'} |")
    return lines
