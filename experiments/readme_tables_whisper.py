"""README and docs/whisper.md blocks about the Whisper-encoder CTC models and the general English LM."""

from __future__ import annotations

from readme_tables_blocks import Results, block

MODELS = "results/whisper_models.json"
HEADS = "results/whisper_heads.json"
GENERAL_LM = "results/general_lm.json"


def _row(data: dict, model: str, name: str, decoder: str, streaming: bool) -> dict:
    return next(r for r in data["rows"] if r["model"] == model and r["set"] == name
                and r["decoder"] == decoder and r["streaming"] == streaming)


BENCHES = {"base": "results/bench_whisper-base.json", "tiny.en": "results/bench_whisper-tiny.json"}


def _bench_lines(res: Results) -> list[str]:
    """Speed and memory of each encoder's FP32, onnxruntime int8 and 4-bit files, streamed."""
    first = next(iter(res.json(BENCHES["base"])["latency"]["2"].values()))
    window = f"{first['chunk_ms'] / 1000:g} s chunks, {first['left_ms'] / 1000:g} s left context, " \
             f"{first['right_ms'] / 1000:g} s look-ahead"
    lines = ["", f"Streamed on 2 threads ({window}; real-speech dev audio; "
             + ", ".join(f"`{p.replace('.json', '.md')}`" for p in BENCHES.values()) + "):", "",
             "| encoder | file | MB | chunk ms p50 | RTF | peak RSS MiB | dev WER % offline |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for encoder, path in BENCHES.items():
        bench = res.json(path)
        for label, row in bench["latency"]["2"].items():
            offline = bench["wer"].get(label, {}).get("offline_wer")
            wer = "—" if offline is None else f"{100 * offline:.1f}"
            lines.append(f"| {encoder} | {label} | {row['file_bytes'] / 1e6:.1f} | "
                         f"{row['chunk_latency_ms']['p50']:.1f} | {row['rtf']:.3f} | "
                         f"{row['peak_rss_mib']:.0f} | {wer} |")
    lines.append("")
    for encoder, path in BENCHES.items():
        head = res.json(path)["headline"]
        lines.append(f"- {encoder}, 4-bit file (`{head['mpq']}`, MatMulNBits with float activations): "
                     f"latency {head['latency_ratio_mpq_over_fp32']:.2f}x FP32's and "
                     f"{head['latency_ratio_mpq_over_ort_int8']:.2f}x onnxruntime int8's, peak RSS "
                     f"{head['rss_ratio_mpq_over_fp32']:.2f}x FP32's.")
    return lines


@block("whisper", MODELS, HEADS, GENERAL_LM, *BENCHES.values())
def whisper(res: Results) -> str:
    data, heads, lm = res.json(MODELS), res.json(HEADS), res.json(GENERAL_LM)
    subject, *others = list(data["models"])
    chosen = min(heads["runs"], key=lambda r: r["best_dev_cer"])
    lines = ["Real speech, test set (`manifest.tsv`, 30 utterances, decoded once; every setting chosen on "
             "the 23 dev utterances of `manifest_crossref.tsv`), offline / streaming "
             f"(`{MODELS.replace('.json', '.md')}`):",
             "", "| model | greedy WER % | greedy CER % | with the general LM: WER % | CER % |",
             "|---|---|---|---|---|"]
    for model in [subject, *others]:
        cells = []
        for decoder in ("greedy", "lm"):
            offline, streamed = (_row(data, model, "real-test", decoder, s) for s in (False, True))
            cells += [f"{100 * offline['wer']:.1f} / {100 * streamed['wer']:.1f}",
                      f"{100 * offline['cer']:.1f} / {100 * streamed['cer']:.1f}"]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    count = _row(data, subject, "synth test-clean", "greedy", False)["utterances"]
    lines += ["", f"Synthetic test sets (first {count} utterances of each, offline, the grammar LM; p: "
              "MAPSSWE against the first row):", "",
              "| model | test-clean greedy WER % | test-clean LM | test-other greedy | test-other LM |",
              "|---|---|---|---|---|"]
    for model in [subject, *others]:
        cells = []
        for name in ("synth test-clean", "synth test-other"):
            for decoder in ("greedy", "lm"):
                row = _row(data, model, name, decoder, False)
                p = f" (p {row['vs_subject']['p_value']:.2g})" if "vs_subject" in row else ""
                cells.append(f"{100 * row['wer']:.1f}{p}")
        lines.append(f"| {model} | {' | '.join(cells)} |")
    best_lm = min(lm["rows"], key=lambda r: r["total_seconds"])
    lines += ["", f"- Chosen on dev (`{HEADS.replace('.json', '.md')}`): {chosen['label']}, "
              f"{chosen['encoder']}, head {chosen['head']}, {chosen['trained']} "
              f"(dev CER {100 * chosen['best_dev_cer']:.1f} %).",
              f"- General LM: {best_lm['words']:,} words, {best_lm['ngrams']['2']:,} bigrams and "
              f"{best_lm['ngrams']['3']:,} trigrams, loads with its lexicon in "
              f"{best_lm['total_seconds']:.1f} s and {best_lm['peak_rss_mib']:.0f} MiB peak RSS "
              f"(`{GENERAL_LM.replace('.json', '.md')}`).", *_bench_lines(res)]
    return "\n".join(lines)


FRONTIER = "results/frontier_whisper-base.json"
SHIPPED = "rtn-g128-4b"  # the frontier system that models/whisper-base-ctc-4bit.onnx is
PAIR = ("whisper-base-ctc", "whisper-base-ctc-4bit")  # its FP32 model and it, in MODELS


def _delta(verdicts: dict, decoder: str) -> str:
    v = verdicts["real-speech"][decoder]
    return (f"{100 * (v['wer_candidate'] - v['wer_reference']):+.2f} points (p {v['p_value']:.2f}, "
            f"{'lossless' if v['lossless'] else '**significantly worse**'})")


def _lossless(record: dict) -> bool:
    return all(v["lossless"] for by in record["verdicts"].values() for v in by.values())


@block("whisper-card", MODELS, FRONTIER)
def whisper_card(res: Results) -> str:
    """The committed 4-bit Whisper-base model: what it scores against its FP32 model, and why this plan."""
    data, frontier = res.json(MODELS), res.json(FRONTIER)
    dev, test = frontier["dev"]["systems"], frontier["test"]["systems"]
    lines = [f"Real speech, FP32 / 4-bit (`{MODELS.replace('.json', '.md')}`; test = `manifest.tsv`, 30 "
             "utterances, decoded once; dev = `manifest_crossref.tsv`, 23 utterances, chose everything):", "",
             "| set | decoder | WER % offline | WER % streaming | CER % offline |", "|---|---|---|---|---|"]
    for name in ("real-dev", "real-test"):
        for decoder in ("greedy", "lm"):
            (fp, q), (fs, qs) = ([_row(data, m, name, decoder, mode) for m in PAIR] for mode in (False, True))
            lines.append(f"| {name} | {decoder} | {100 * fp['wer']:.1f} / {100 * q['wer']:.1f} | "
                         f"{100 * fs['wer']:.1f} / {100 * qs['wer']:.1f} | "
                         f"{100 * fp['cer']:.1f} / {100 * q['cer']:.1f} |")
    judged = [r for r in dev.values() if r["family"] != "fp32"]
    lowest = min(r["stored_bits_per_weight"] for r in judged if _lossless(r))
    best = [r["name"] for r in judged if _lossless(r) and r["stored_bits_per_weight"] == lowest]
    low = [r for r in judged if r["stored_bits_per_weight"] < 4]
    least = min(100 * (r["verdicts"]["real-speech"]["greedy"]["wer_candidate"]
                       - r["verdicts"]["real-speech"]["greedy"]["wer_reference"]) for r in low)
    shipped, tested = dev[SHIPPED]["verdicts"], test[SHIPPED]["verdicts"]
    names = " and ".join(f"`{name}`" for name in best)
    lines += ["", f"- Why this plan (`{FRONTIER.replace('.json', '.md')}`): of {len(judged)} quantizers "
              "judged against FP32 on real-speech dev, the lowest stored bits lossless on both verdicts: "
              f"{lowest:.2f} stored bits per weight ({names}); this file is `{SHIPPED}` (4-bit codes, an "
              "fp32 scale per block of 128). Dev: greedy "
              f"{_delta(shipped, 'greedy')}, with the LM {_delta(shipped, 'lm')}. Test: greedy "
              f"{_delta(tested, 'greedy')}, with the LM {_delta(tested, 'lm')}.",
              f"- Dev has {dev['fp32']['results']['real-speech']['greedy']['ref_words']} words, so only "
              "differences of a few points are significant there: \"lossless\" is a weak "
              f"claim. Every one of the {len(low)} plans under 4 stored bits per weight lost {least:.0f} "
              "points of greedy WER or more."]
    return "\n".join(lines)


TINY = "whisper-tiny-ctc"  # models/whisper-tiny-ctc's name in MODELS


@block("whisper-tiny-card", MODELS, BENCHES["tiny.en"])
def whisper_tiny_card(res: Results) -> str:
    """models/whisper-tiny-ctc: WER and CER on every set, and its speed against its quantized files."""
    data, bench = res.json(MODELS), res.json(BENCHES["tiny.en"])
    lines = [f"`{MODELS.replace('.json', '.md')}` (real test = `manifest.tsv`, 30 utterances, decoded once; "
             "real dev = `manifest_crossref.tsv`, 23 utterances, chose the checkpoint and the LM weights; "
             "synthetic: the first 200 utterances of each test split, the grammar LM):", "",
             "| set | decoder | WER % offline / streaming | CER % offline |", "|---|---|---|---|"]
    for name in ("real-dev", "real-test", "synth test-clean", "synth test-other"):
        for decoder in ("greedy", "lm"):
            offline, streamed = (_row(data, TINY, name, decoder, s) for s in (False, True))
            lines.append(f"| {name} | {decoder} | {100 * offline['wer']:.1f} / {100 * streamed['wer']:.1f} | "
                         f"{100 * offline['cer']:.1f} |")
    report = BENCHES["tiny.en"].replace(".json", ".md")
    lines += ["", f"Streamed on 2 threads, real-speech dev audio (`{report}`):",
              "", "| file | MB | chunk ms p50 | RTF | peak RSS MiB |", "|---|---:|---:|---:|---:|"]
    for label, row in bench["latency"]["2"].items():
        lines.append(f"| {label} | {row['file_bytes'] / 1e6:.1f} | {row['chunk_latency_ms']['p50']:.1f} | "
                     f"{row['rtf']:.3f} | {row['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


BEAM = "results/lm_beam_whisper.json"


@block("whisper-beam", BEAM)
def whisper_beam(res: Results) -> str:
    """The general LM's beam width, chosen on dev, and what it does on test."""
    data = res.json(BEAM)
    test_s = data["audio_seconds"]["test"]
    lines = [f"The LM decoder's beam (24 hypotheses by default, tuned on the 72-word grammar) is too narrow "
             f"for the general LM's 72k words. Chosen per model on real-speech dev "
             f"(`{BEAM.replace('.json', '.md')}`), judged once on test, offline:", "",
             "| model | dev-chosen beam, LM weight, word score | test WER % at beam 24 | at the chosen beam "
             "| test CER % at the chosen beam | LM decode RTF |", "|---|---|---:|---:|---:|---:|"]
    for row in data["rows"]:
        chosen, test = row["chosen"], row["test"]
        lines.append(f"| {row['model']} | {chosen['beam_size']}, {chosen['lm_weight']:g}, "
                     f"{chosen['word_score']:g} | {100 * test['beam24']['wer']:.1f} | "
                     f"{100 * test['chosen']['wer']:.1f} | {100 * test['chosen']['cer']:.1f} | "
                     f"{test['chosen']['decode_seconds'] / test_s:.3f} |")
    return "\n".join(lines)
