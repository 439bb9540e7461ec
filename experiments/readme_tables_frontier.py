"""README's frontier block: where mixed precision stands against what a user would run instead,
from results/frontier_demo.json (speechmpq frontier-report)."""

from __future__ import annotations

from readme_tables_blocks import Results, block, failed, p_value, points

from speechmpq.jobs.verdicts import lossless_everywhere

FRONTIER = "results/frontier_demo.json"


@block("frontier", FRONTIER)
def frontier(res: Results) -> str:
    report = res.json(FRONTIER)
    head, dev = report["headline_dev"], report["dev"]["systems"]
    best = sorted(head["lowest_lossless"].items(), key=lambda kv: kv[1]["stored_bits_per_weight"])
    families = "; ".join(f"{family} {v['stored_bits_per_weight']:.2f} (`{v['system']}`)"
                         for family, v in best)
    rtn_like = [r["name"] for r in dev.values() if r["family"] == "one-stage"
                and r.get("stats", {}).get("equals_rtn")]
    tried = sum(r["family"] == "one-stage" for r in dev.values())
    if "one_stage_over_best_peer" in head:
        ratio = head["one_stage_over_best_peer"]
        verdict = (f"one-stage mixed precision's lowest lossless point is {ratio:.2f}x "
                   f"{'below' if ratio > 1 else 'above'} the best peer's "
                   f"(`{head['best_peer']['system']}`, "
                   f"{head['best_peer']['stored_bits_per_weight']:.2f} bits)")
    else:
        verdict = (f"none of the {tried} one-stage plans tried is lossless on all four dev verdicts "
                   "except those equal to round to nearest of their plan: there is no ratio over the "
                   "best peer to report")
    lowest = min((r["stored_bits_per_weight"] for r in dev.values()
                  if r["family"] != "fp32" and lossless_everywhere(r["verdicts"])), default=None)
    lines = [
        f"- **Against what a user would run instead** ({len(dev) - 1} systems judged against FP32 on "
        f"2 x 1,500 dev utterances, greedy and with the LM; size = stored bits per weight over the 36 "
        f"searched matrices, codes + scales + zero points). Lowest stored bits lossless on all four dev "
        f"verdicts, per family: {families}. So {verdict}.",
        f"- **The 3-bit target is {'met' if lowest is not None and lowest <= 3.0 else 'not met'}:** "
        + (f"the lowest lossless point of any method is {lowest:.2f} stored bits per weight."
           if lowest is not None else "no method is lossless on all four dev verdicts."),
    ]
    for record in dev.values():
        if record["family"] == "ort" and "mix" in record["settings"] and record["name"].endswith("g128"):
            failed_on = [f"{c} {d} {points(v['wer_candidate'] - v['wer_reference'])} "
                         f"(p {p_value(v['p_value'])})" for c, per in record["verdicts"].items()
                         for d, v in per.items() if not v["lossless"]]
            lines.append(f"- **The hand mix by layer type** (`{record['name']}`, onnxruntime, "
                         f"{record['stored_bits_per_weight']:.2f} stored bits) is "
                         + ("lossless." if not failed_on else f"not lossless: {', '.join(failed_on)}."))
    paper = head.get("paper_setting", {}).get("lowest_lossless", {})
    if paper:
        lines.append("- **The paper's setting** (per-tensor steps, code bits): lowest lossless " + "; ".join(
            f"{family} {v['average_bits']:.2f} (`{v['system']}`, {v['compression_seconds']:.0f} s)"
            for family, v in paper.items()) + "; "
            + ", ".join(f for f in ("uniform", "two-stage", "one-stage") if f not in paper)
            + " none, so the paper's ratios (1.7x over uniform, 1.9x over two-stage) cannot be formed.")
    if rtn_like:
        lines.append(f"- One-stage plans equal to round to nearest of their own plan (codes within 1 %, "
                     f"steps within 1 %: counted as RTN): {', '.join(f'`{n}`' for n in rtn_like)}.")
    test = report.get("test")
    if test:
        cells = []
        for name, record in test["systems"].items():
            if record["family"] == "fp32":
                continue
            failed_on = failed(record["verdicts"])
            cells.append(f"`{name}` ({record['stored_bits_per_weight']:.2f} bits) "
                         + ("lossless on all four" if not failed_on else "NO on " + ", ".join(failed_on)))
        lines.append(f"- **Test verdicts** (finalists only, 2 x 1,500 test utterances, settings chosen on "
                     f"dev): {'; '.join(cells)}.")
    return "\n".join(lines)
