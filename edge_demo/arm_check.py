"""Same model, same clips, two machines: the emulated-CPU checks (numpy + onnxruntime only).

``run`` transcribes clips (offline and streaming) at the given MatMulNBits accuracy levels, with the
kernels the runtime chooses for the CPU it runs on (recorded per level), and saves the offline
logits; it is what runs inside the emulated arm64 chroot, under ``qemu-x86_64 -cpu Haswell`` and on
the x86 host. ``compare`` checks the emulated runs against the native one and writes
``results/arm.md`` + JSON. ``bake`` writes the file an export that chose kernels for one CPU would
have shipped (the negative control: run as stored on another CPU, it must fail the check):

    python -m speechmpq.edge_demo.arm_check run --model M.onnx --clips a.flac b.flac --out x86
    python -m speechmpq.edge_demo.arm_check compare --reference x86 --runs neoverse-n1 cortex-a72 \
        --out results/arm
    python -m speechmpq.edge_demo.arm_check bake --model M.onnx --isa avx2 avx512_vnni --out baked.onnx

The drivers are ``edge_demo/arm_emulation.sh`` (builds the chroot, runs both, compares) and
``edge_demo/x86_emulation.sh`` (x86-64 without VNNI or AVX-512, user-mode qemu).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from speechmpq.audio import SAMPLE_RATE
from speechmpq.files import atomic_output, atomic_write

# Largest |logit difference| vs x86 accepted at accuracy level 0: fp32 activations everywhere, so
# the only differences are summation order. At levels 1-4 MatMulNBits may quantize activations to
# int8 per block, and x86 and arm64 kernels round differently (or, without dotprod, do not quantize
# at all); there the tolerance is twice the x86 run's own level-L vs level-0 difference on that clip:
# two paths each within e of the exact product are within 2e of each other.
LEVEL0_TOLERANCE = 1e-3


TEXT_KEYS = ("offline_text", "streaming_text", "lm_streaming_text")


def _same_texts(theirs: dict, allowed: dict) -> bool:
    return all(theirs.get(key) == allowed.get(key) for key in TEXT_KEYS)


def _allowed_texts(ref: dict, level: str, clip: str) -> list[dict]:
    """The x86 transcripts an arm64 run may match: at level 0 x86's own; at a level with int8
    activations x86's at that level or its exact (level-0) ones, since each CPU is only within its
    own quantization error of the exact product (a near tie may fall either way; an arm64 CPU
    without an int8 dot-product kernel computes the exact product at every level)."""
    allowed = [ref["levels"][level]["clips"][clip]]
    exact = ref["levels"].get("0", {}).get("clips", {}).get(clip)
    if level != "0" and exact is not None:
        allowed.append(exact)
    return allowed


def tolerance(reference_logits: dict, level: str, clip: str) -> tuple[float, float | None]:
    """(tolerance, the x86 level-L vs level-0 difference it was derived from)."""
    exact = reference_logits.get(f"0/{clip}")
    if level == "0" or exact is None:
        return LEVEL0_TOLERANCE, None
    own = float(np.abs(reference_logits[f"{level}/{clip}"] - exact).max())
    return max(2 * own, LEVEL0_TOLERANCE), own


def run(model: str, clips: list[str], out: Path, levels: list[int], threads: int,
        lm: str | None = None, kernels: str = "auto") -> dict:
    import onnxruntime as ort

    from speechmpq.audio import load_audio
    from speechmpq.runtime import (
        DecoderConfig,
        Recognizer,
        RecognizerConfig,
        SessionConfig,
        StreamingConfig,
        find_lm,
    )

    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": platform.machine(), "python": platform.python_version(),
              "onnxruntime": ort.__version__, "numpy": np.__version__,
              "qemu_cpu": os.environ.get("QEMU_CPU", ""), "model": str(model), "threads": threads,
              "kernels": kernels, "levels": {}}
    audio = {Path(clip).name: load_audio(clip) for clip in clips}
    arrays = {}
    for level in levels:
        session = SessionConfig(threads=threads, accuracy_level=level, kernels=kernels)
        began = time.perf_counter()
        streaming = Recognizer(model, RecognizerConfig(session=session))
        load_seconds = time.perf_counter() - began
        offline = Recognizer(streaming.model, RecognizerConfig(session=session,
                                                               streaming=StreamingConfig(chunk_ms=0)))
        # the LM decoder too: ``lm`` (with lexicon.txt beside it, if any), else an LM beside the model
        with_lm = (Recognizer(streaming.model, RecognizerConfig(session=session,
                                                                decoder=DecoderConfig("lm", lm=lm)))
                   if lm or find_lm(model) else None)
        clips_report = {}
        for name, samples in audio.items():
            began = time.perf_counter()
            logits = streaming.model.logits(streaming.model.prepare(samples))[0]
            offline_seconds = time.perf_counter() - began
            stream = streaming.create_stream()
            began = time.perf_counter()
            stream.accept_waveform(samples, SAMPLE_RATE)
            stream.input_finished()
            streaming.decode(stream)
            streaming_seconds = time.perf_counter() - began
            arrays[f"{level}/{name}"] = logits
            clips_report[name] = {
                "audio_seconds": samples.size / SAMPLE_RATE,
                "offline_text": offline.transcribe(samples, SAMPLE_RATE),
                "streaming_text": stream.result.text, "offline_seconds": offline_seconds,
                "streaming_seconds": streaming_seconds, "windows": len(stream.compute_seconds)}
            if with_lm is not None:
                began = time.perf_counter()
                clips_report[name]["lm_streaming_text"] = with_lm.transcribe(samples, SAMPLE_RATE)
                clips_report[name]["lm_streaming_seconds"] = time.perf_counter() - began
        choice = streaming.model.kernels
        report["levels"][str(level)] = {"load_seconds": load_seconds, "clips": clips_report,
                                        "kernels": choice.summary(), "kernel_counts": choice.counts(),
                                        "cpu": list(choice.cpu.isa)}
    with atomic_output(out / "logits.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    atomic_write(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report


def bake(model: Path, out: Path, isa: list[str], accuracy_level: int, arch: str = "x86_64") -> dict:
    """Write ``model`` with each layer's kernel chosen for a CPU of ``arch`` and ``isa`` (what an
    export that chose kernels for the exporting CPU shipped); returns the choice."""
    from speechmpq.runtime.cpu_facts import CpuFacts
    from speechmpq.runtime.kernel_choice import prepare

    prepared = prepare(Path(model), CpuFacts(arch, tuple(sorted(isa)), "given"), "auto", accuracy_level,
                       use_cache=False)
    data = prepared.source if isinstance(prepared.source, bytes) else Path(prepared.source).read_bytes()
    with atomic_output(out) as tmp:
        Path(tmp).write_bytes(data)
    return prepared.choice.to_dict()


def compare(reference: Path, runs: list[Path]) -> dict:
    """Transcripts must match x86 exactly, logits within TOLERANCE of the level."""
    ref = json.loads((reference / "report.json").read_text())
    ref_logits = dict(np.load(reference / "logits.npz"))
    summary = {"reference": ref, "runs": [], "passed": True}
    for path in runs:
        other = json.loads((path / "report.json").read_text())
        logits = np.load(path / "logits.npz")
        entry = {"name": path.name, "report": other, "levels": {}}
        for level, data in ref["levels"].items():
            checks = {}
            for clip in data["clips"]:
                theirs = other["levels"][level]["clips"][clip]
                key = f"{level}/{clip}"
                a, b = ref_logits[key], logits[key]
                difference = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
                limit, own = tolerance(ref_logits, level, clip)
                versus_exact = (float(np.abs(ref_logits[f"0/{clip}"] - b).max())
                                if f"0/{clip}" in ref_logits and a.shape == b.shape else None)
                same_text = any(_same_texts(theirs, allowed) for allowed in _allowed_texts(ref, level, clip))
                ok = same_text and difference <= limit
                checks[clip] = {"max_logit_difference": difference, "tolerance": limit,
                                "x86_level_vs_level0": own, "versus_x86_level0": versus_exact,
                                "same_text": same_text, "passed": ok}
                summary["passed"] &= ok
            entry["levels"][level] = checks
        summary["runs"].append(entry)
    return summary


def _qemu_version(binary: str) -> str:
    import subprocess

    try:
        first = subprocess.run([binary, "--version"], capture_output=True, text=True,
                               timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return f"{binary} (version unknown)"
    return first[0] if first else binary


# what each emulated check is: title, qemu binary, how the emulated machine was set up
SETUPS = {
    "arm": ("aarch64 under emulation: same transcripts as x86", "qemu-aarch64-static",
            "(user mode), Debian 12 arm64 chroot (debootstrap minbase + python3)."),
    "x86": ("x86-64 without VNNI or AVX-512 under emulation: same transcripts as native", "qemu-x86_64",
            "(user mode, QEMU_CPU=Haswell: AVX2 and FMA, no AVX-512, no VNNI), the host's own Python, "
            "venv and wheels."),
    "x86-control": ("Negative control: a file with kernels chosen for a VNNI CPU, run as stored on an "
                    "x86-64 without VNNI", "qemu-x86_64",
                    "(user mode, QEMU_CPU=Haswell), the host's own Python, venv and wheels. Expected: FAIL "
                    "(int8-dynamic with full-range 8-bit codes overflows int16 without VNNI)."),
}


def markdown(summary: dict, command: str, kind: str = "arm") -> str:
    ref = summary["reference"]
    title, binary, setup = SETUPS[kind]
    lines = [f"# {title}", "",
             f"Command: `{command}`  ", f"Date: {time.strftime('%Y-%m-%d')}. Host: x86_64 "
             f"({platform.processor() or platform.machine()}), {_qemu_version(binary)} {setup}",
             f"Model: `{ref['model']}`, {ref['threads']} thread(s). Host: Python {ref['python']}, "
             f"onnxruntime {ref['onnxruntime']}, numpy {ref['numpy']}.", ""]
    for entry in summary["runs"]:
        r = entry["report"]
        lines.append(f"- **{entry['name']}**: QEMU_CPU={r['qemu_cpu'] or '(default)'}, "
                     f"machine {r['machine']}, Python {r['python']}, onnxruntime {r['onnxruntime']}, "
                     f"numpy {r['numpy']}")
    lines += _kernel_lines(summary)
    lines += ["", f"Verdict: **{'PASS' if summary['passed'] else 'FAIL'}** — transcripts (offline and "
              "streaming) identical to x86 (above level 0: to x86's at that level or its exact level-0 "
              "ones), and logits within the tolerance of the accuracy level: "
              f"{LEVEL0_TOLERANCE:g} at level 0 (fp32 activations: summation order only); at level 4 "
              "twice the x86 run's own level-4 vs level-0 difference on that clip (int8 activations "
              "on both sides, each within that error of the exact product).", ""]
    for level, data in ref["levels"].items():
        lines += [f"## Accuracy level {level}", "",
                  "| clip | machine | offline transcript | streaming = offline | max abs logit diff vs x86 "
                  "(tolerance) | vs x86 level 0 | offline s | streaming s |",
                  "|---|---|---|---|---|---|---|---|"]
        for clip, values in data["clips"].items():
            lines.append(f"| {clip} | x86_64 (native) | {values['offline_text']} | "
                         f"{values['streaming_text'] == values['offline_text']} | — | — | "
                         f"{values['offline_seconds']:.3f} | {values['streaming_seconds']:.3f} |")
            for entry in summary["runs"]:
                theirs = entry["report"]["levels"][level]["clips"][clip]
                check = entry["levels"][level][clip]
                text = theirs["offline_text"] if check["same_text"] else f"**{theirs['offline_text']}**"
                lines.append(f"| {clip} | {entry['name']} (emulated) | {text} | "
                             f"{theirs['streaming_text'] == theirs['offline_text']} | "
                             f"{check['max_logit_difference']:.2e} ({check['tolerance']:.2e}) | "
                             f"{_maybe(check.get('versus_x86_level0'))} | {theirs['offline_seconds']:.3f} | "
                             f"{theirs['streaming_seconds']:.3f} |")
        lines.append("")
    lm_rows = [(clip, level, values["lm_streaming_text"]) for level, data in ref["levels"].items()
               for clip, values in data["clips"].items() if "lm_streaming_text" in values]
    if lm_rows:
        lines += ["## With the LM decoder (streaming, lm.arpa.gz + lexicon.txt beside the model)", "",
                  "| clip | level | x86 transcript | same on every arm64 CPU |", "|---|---|---|---|"]
        for clip, level, text in lm_rows:
            same = all(e["report"]["levels"][level]["clips"][clip].get("lm_streaming_text") == text
                       for e in summary["runs"])
            lines.append(f"| {clip} | {level} | {text} | {same} |")
        lines.append("")
    if kind != "arm":
        lines += ["Timings on the emulated rows are qemu user-mode emulation (TCG), not that CPU's speed. "
                  "The emulated CPU's features come from qemu's CPUID, which numpy's runtime dispatch and "
                  "onnxruntime both read (/proc/cpuinfo there is the host's and is not trusted).", ""]
        return "\n".join(lines)
    lines += ["Timings on the arm64 rows are qemu user-mode emulation on the x86 host, not ARM speed; "
              "they only show the runtime works there. 'vs x86 level 0' is the arm64 logits' distance from "
              "the x86 fp32-activation logits: at level 4, a value near 1e-5 means that CPU computed "
              "with fp32 activations (no int8 dot-product kernel was taken), a value near the x86 "
              "level-4 error means it quantized activations as x86 does. The chroot has no /proc or "
              "/sys mounted (onnxruntime would read the host's x86 CPU description and crash), so "
              "onnxruntime picks its kernels from the emulated CPU's feature registers: neoverse-n1 has "
              "dotprod "
              "(int8 KleidiAI/MLAS dot-product kernels), cortex-a72 does not.", ""]
    return "\n".join(lines)


def _kernel_lines(summary: dict) -> list[str]:
    """Which kernels each machine's runtime chose at load, per accuracy level."""
    lines = ["", "## Kernels chosen at load", "", "| machine | level | kernels |", "|---|---|---|"]
    runs = [("native x86_64", summary["reference"])] + [(e["name"], e["report"]) for e in summary["runs"]]
    for name, report in runs:
        for level, data in report["levels"].items():
            lines.append(f"| {name} | {level} | {data.get('kernels', '(not recorded)')} |")
    return lines


def _maybe(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechmpq.edge_demo.arm_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="transcribe clips and save logits")
    r.add_argument("--model", required=True)
    r.add_argument("--clips", nargs="+", required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--levels", type=int, nargs="+", default=[0, 4])
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--lm", default=None, help="ARPA LM for the LM-decoder transcripts")
    r.add_argument("--kernels", default="auto", choices=["auto", "int8", "nbits", "float"])
    b = sub.add_parser("bake", help="write the model with kernels chosen for another CPU")
    b.add_argument("--model", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--arch", default="x86_64")
    b.add_argument("--isa", nargs="*", default=["avx2", "avx512f", "avx512_vnni"])
    b.add_argument("--accuracy-level", type=int, default=4)
    c = sub.add_parser("compare", help="compare arm64 runs with the x86 run, write a report")
    c.add_argument("--reference", type=Path, required=True)
    c.add_argument("--runs", type=Path, nargs="+", required=True)
    c.add_argument("--out", type=Path, help="write OUT.md and OUT.json")
    c.add_argument("--command", default="bash edge_demo/arm_emulation.sh")
    c.add_argument("--kind", default="arm", choices=sorted(SETUPS), help="which check the report is")
    c.add_argument("--expect-fail", action="store_true",
                   help="a negative control: exit 0 only when the comparison fails")
    args = parser.parse_args(argv)
    if args.command == "bake":
        choice = bake(args.model, args.out, args.isa, args.accuracy_level, args.arch)
        print(f"wrote {args.out}: {choice['counts']}")
        return 0
    if args.command == "run":
        report = run(args.model, args.clips, args.out, args.levels, args.threads, args.lm, args.kernels)
        for level, data in report["levels"].items():
            for clip, values in data["clips"].items():
                print(f"{report['machine']} {report['qemu_cpu'] or '-'} level {level} {clip}: "
                      f"{values['offline_text']}")
        return 0
    summary = compare(args.reference, args.runs)
    if args.out:
        for suffix, text in ((".md", markdown(summary, args.command, args.kind)),
                             (".json", json.dumps(summary, indent=2) + "\n")):
            atomic_write(args.out.with_name(args.out.name + suffix), text)
    for entry in summary["runs"]:
        for level, checks in entry["levels"].items():
            for clip, check in checks.items():
                print(f"{entry['name']} level {level} {clip}: same text {check['same_text']}, max logit "
                      f"diff {check['max_logit_difference']:.2e} (tol {check['tolerance']:.2e})")
    print("PASS" if summary["passed"] else "FAIL")
    if args.expect_fail:
        print("negative control: " + ("failed as it must" if not summary["passed"] else
                                      "PASSED, so this check cannot see the fault it is for"))
        return 0 if not summary["passed"] else 1
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
