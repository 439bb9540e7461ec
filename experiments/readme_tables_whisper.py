"""README and docs/whisper.md blocks about the Whisper-encoder CTC models and the general English LM."""

from __future__ import annotations

from readme_tables_blocks import Results, block

MODELS = "results/whisper_models.json"
HEADS = "results/whisper_heads.json"
GENERAL_LM = "results/general_lm.json"


def _row(data: dict, model: str, name: str, decoder: str, streaming: bool) -> dict:
    return next(r for r in data["rows"] if r["model"] == model and r["set"] == name
                and r["decoder"] == decoder and r["streaming"] == streaming)


@block("whisper", MODELS, HEADS, GENERAL_LM)
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
              f"(`{GENERAL_LM.replace('.json', '.md')}`)."]
    return "\n".join(lines)
