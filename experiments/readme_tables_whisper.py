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
    synth = []
    for name in ("synth test-clean", "synth test-other"):
        for decoder in ("greedy", "lm"):
            mine = _row(data, subject, name, decoder, False)
            for model in others:
                peer = _row(data, model, name, decoder, False)
                synth.append(f"{name.removeprefix('synth ')} {decoder}: {100 * mine['wer']:.1f} vs {model} "
                             f"{100 * peer['wer']:.1f} (p {peer['vs_subject']['p_value']:.2g})")
    best_lm = min(lm["rows"], key=lambda r: r["total_seconds"])
    lines += ["", f"- Synthetic test sets ({mine['utterances']} utterances each, offline, WER %): "
              + "; ".join(synth) + ".",
              f"- Chosen on dev (`{HEADS.replace('.json', '.md')}`): {chosen['label']}, {chosen['encoder']}, "
              f"head {chosen['head']}, {chosen['trained']} (dev CER {100 * chosen['best_dev_cer']:.1f} %).",
              f"- General LM: {best_lm['words']:,} words, {best_lm['ngrams']['2']:,} bigrams and "
              f"{best_lm['ngrams']['3']:,} trigrams, loads with its lexicon in "
              f"{best_lm['total_seconds']:.1f} s and {best_lm['peak_rss_mib']:.0f} MiB peak RSS "
              f"(`{GENERAL_LM.replace('.json', '.md')}`)."]
    return "\n".join(lines)
