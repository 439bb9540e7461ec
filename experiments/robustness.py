"""Bad input, one case at a time, through the real command line: what a user sees for each.

    python experiments/robustness.py --out results/robustness [--long-hours 2] [--tests]

Every case runs `speechmpq ...` in a fresh process and records the exit status, the last line on
stderr, whether a Python traceback appeared, the transcript (where one is expected) and the peak RSS
of the process. A case passes when it gets what the "expect" column says: a transcript with exit 0,
or a one-line `error:` message with a non-zero exit — never a traceback. Writes OUT.md and OUT.json.

With --tests it also runs the reliability tests (bad input in the API, killed writers, SIGKILLed
training runs, runtime faults, server hardening, the property-based tests, the short soak; slow ones
included) and lists every test case with its outcome, and sums up the fuzz and soak results
committed beside OUT (fuzz.md, every soak*.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "demo-mpq.onnx"
SPEECHMPQ = [sys.executable, "-m", "speechmpq"]


def _run(argv: list[str], timeout: float = 3600) -> dict:
    """Run one case; exit status, stderr, stdout and the child's own peak RSS (wait4's rusage)."""
    import threading

    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    streams = {"out": "", "err": ""}

    def drain(name, pipe):
        streams[name] = pipe.read()

    readers = [threading.Thread(target=drain, args=("out", process.stdout)),
               threading.Thread(target=drain, args=("err", process.stderr))]
    for reader in readers:
        reader.start()
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    _, status, usage = os.wait4(process.pid, 0)
    timer.cancel()
    for reader in readers:
        reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    out, err = streams["out"], streams["err"]
    lines = [line for line in err.splitlines() if line.strip()]
    return {"code": process.returncode, "stderr_last": lines[-1] if lines else "",
            "error_lines": sum(line.startswith("error:") for line in lines),
            "warnings": [line for line in lines if line.startswith("warning:")],
            "traceback": "Traceback (most recent call last)" in err, "stdout": out.strip(),
            "seconds": time.perf_counter() - started, "peak_rss_mib": usage.ru_maxrss / 1024}


def _speech(seconds: float) -> np.ndarray:
    """Real synthesized speech from the bundled clips, repeated to ``seconds``."""
    from speechmpq.audio import load_audio

    clips = [load_audio(p) for p in sorted((ROOT / "edge_demo" / "clips").glob("*.flac"))]
    unit = np.concatenate([np.concatenate([c, np.zeros(8000, np.float32)]) for c in clips])
    return np.tile(unit, int(np.ceil(seconds * 16000 / unit.size)))[: int(seconds * 16000)]


def build_cases(work: Path, long_hours: float) -> list[dict]:
    """Every case, written in results/robustness.md's order (long: one flat table of cases, read top
    to bottom; a split would scatter it)."""
    speech = _speech(6.0)
    cases = []

    def audio(name, expect, maker, note=""):
        path = work / name
        maker(path)
        cases.append({"group": "audio", "case": note or name, "expect": expect,
                      "argv": [*SPEECHMPQ, "stream", str(MODEL), str(path), "--quiet"]})

    audio("empty.wav", "error", lambda p: p.write_bytes(b""), "empty file (0 bytes)")
    audio("zero.wav", "error", lambda p: soundfile.write(p, np.zeros(0, np.float32), 16000),
          "valid WAV header, zero-length signal")
    audio("ok.flac", "transcript", lambda p: soundfile.write(p, speech, 16000),
          "FLAC, 16 kHz mono (reference)")

    def truncated(suffix, keep):
        def make(p):
            full = work / f"full{suffix}"
            soundfile.write(full, speech, 16000)
            data = full.read_bytes()
            p.write_bytes(data[: int(len(data) * keep)])
        return make

    audio("cut.flac", "transcript or error", truncated(".flac", 0.5), "FLAC cut at half its bytes")
    audio("header.flac", "error", truncated(".flac", 0.002), "FLAC cut inside its header")
    audio("cut.wav", "transcript", truncated(".wav", 0.5), "WAV cut at half its bytes (header says more)")
    audio("text.wav", "error", lambda p: p.write_text("this is not audio\n" * 50), "a text file named .wav")
    audio("random.flac", "error", lambda p: p.write_bytes(np.random.default_rng(0).bytes(20000)),
          "random bytes named .flac")
    cases.append({"group": "audio", "case": "a directory", "expect": "error",
                  "argv": [*SPEECHMPQ, "stream", str(MODEL), str(work), "--quiet"]})
    cases.append({"group": "audio", "case": "a missing file", "expect": "error",
                  "argv": [*SPEECHMPQ, "stream", str(MODEL), str(work / "missing.wav"), "--quiet"]})
    import soxr

    for rate in (8000, 22050, 44100, 48000, 96000):
        audio(f"r{rate}.wav", "transcript",
              lambda p, r=rate: soundfile.write(p, soxr.resample(speech, 16000, r), r),
              f"{rate} Hz (resampled as a stream)")
    audio("stereo.wav", "transcript", lambda p: soundfile.write(
        p, np.stack([speech, speech], 1), 16000), "stereo")
    audio("six.wav", "transcript", lambda p: soundfile.write(
        p, np.stack([speech] * 6, 1), 16000), "6 channels")
    for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
        audio(f"{subtype}.wav", "transcript",
              lambda p, s=subtype: soundfile.write(p, speech, 16000, subtype=s),
              f"WAV {subtype}")
    audio("ogg.ogg", "transcript", lambda p: soundfile.write(p, speech, 16000, format="OGG"), "Ogg Vorbis")

    def poisoned(value):
        def make(p):
            bad = speech.copy()
            bad[len(bad) // 2] = value
            soundfile.write(p, bad, 16000, subtype="FLOAT")
        return make

    audio("nan.wav", "error", poisoned(np.nan), "one NaN sample (float WAV)")
    audio("inf.wav", "error", poisoned(np.inf), "one Inf sample (float WAV)")
    audio("clip.wav", "transcript", lambda p: soundfile.write(p, np.clip(speech * 20, -1, 1), 16000),
          "hard clipping (x20 gain, clipped)")
    audio("over.wav", "transcript", lambda p: soundfile.write(p, speech * 3, 16000, subtype="FLOAT"),
          "float samples beyond ±1 (x3)")
    audio("one.wav", "error", lambda p: soundfile.write(p, np.zeros(1, np.float32), 44100),
          "one sample at 44.1 kHz (too short)")
    audio("short.wav", "exit 0 (transcript may be empty)", lambda p: soundfile.write(p, speech[:3000], 16000),
          "0.19 s of audio (shorter than one chunk)")
    if long_hours > 0:
        def long_file(p):
            with soundfile.SoundFile(p, "w", 16000, 1, subtype="PCM_16") as handle:
                block = _speech(600.0)
                for _ in range(int(long_hours * 6)):
                    handle.write(block)
        audio("long.wav", "transcript", long_file, f"{long_hours:g} h file (streamed in bounded memory)")

    # ---- models ----
    def model(name, expect, maker, note):
        path = work / name
        maker(path)
        cases.append({"group": "model", "case": note, "expect": expect,
                      "argv": [*SPEECHMPQ, "stream", str(path), str(work / "ok.flac"), "--quiet"]})

    model("text.onnx", "error", lambda p: p.write_text("not a model"), "not an ONNX file")
    model("cut.onnx", "error", lambda p: p.write_bytes(MODEL.read_bytes()[: MODEL.stat().st_size // 2]),
          "truncated .onnx (half its bytes)")
    model("missing.onnx", "error", lambda p: None, "no such model file")

    def edit_metadata(change):
        def make(p):
            import onnx

            graph = onnx.load(str(MODEL))
            metadata = {prop.key: prop.value for prop in graph.metadata_props}
            change(metadata)
            del graph.metadata_props[:]
            for key, value in metadata.items():
                graph.metadata_props.add(key=key, value=value)
            onnx.save(graph, str(p))
        return make

    model("plain.onnx", "transcript + warning", edit_metadata(lambda m: m.clear()),
          "no speechmpq metadata (another tool's export)")
    model("newer.onnx", "error", edit_metadata(lambda m: m.update({"speechmpq.format_version": "99"})),
          "metadata from a newer format version")

    def small_vocab(m):
        vocab = json.loads(m["vocab"])
        m["vocab"] = json.dumps({k: v for k, v in vocab.items() if v < 10})

    model("vocab.onnx", "error", edit_metadata(small_vocab), "vocabulary smaller than the output size")

    def wrong_plan(m):
        plan = json.loads(m["speechmpq.bitplan"])
        plan["layers"]["wav2vec2.encoder.layers.99.attention.k_proj"] = next(iter(plan["layers"].values()))
        m["speechmpq.bitplan"] = json.dumps(plan)

    model("plan.onnx", "error", edit_metadata(wrong_plan), "bit plan naming a layer the graph does not have")
    model("badjson.onnx", "error", edit_metadata(lambda m: m.update({"vocab": "{not json"})),
          "metadata that is not valid JSON")

    # ---- configs and command line ----
    def cli(note, argv, expect="error"):
        cases.append({"group": "config", "case": note, "expect": expect, "argv": [*SPEECHMPQ, *argv]})

    ok = str(work / "ok.flac")
    cli("chunk not a multiple of the frame stride", ["stream", str(MODEL), ok, "--chunk-ms", "650"])
    cli("negative chunk", ["stream", str(MODEL), ok, "--chunk-ms", "-640"])
    cli("negative threads", ["stream", str(MODEL), ok, "--threads", "-1"])
    cli("accuracy level 7", ["stream", str(MODEL), ok, "--accuracy-level", "7"])
    cli("beam size 0", ["stream", str(MODEL), ok, "--decoder", "beam", "--beam-size", "0"])
    cli("feed 0 ms", ["stream", str(MODEL), ok, "--feed-ms", "0"])
    demo_dir = str(ROOT / "models" / "demo")
    data = str(work / "tiny-data")
    cli("target bits 9 (above the candidates)", ["quantize", "--model", demo_dir, "--data", data, "--out",
                                                  str(work / "q1"), "--target-bits", "9"])
    cli("target bits 1 (below the candidates)", ["quantize", "--model", demo_dir, "--data", data, "--out",
                                                  str(work / "q2"), "--target-bits", "1"])
    cli("unknown layer name in a per-layer rule", ["quantize", "--model", demo_dir, "--data", data, "--out",
                                                    str(work / "q3"), "--layer", "no.such.layer=4"])
    cli("candidate bit width 0", ["quantize", "--model", demo_dir, "--data", data, "--out", str(work / "q4"),
                                  "--candidates", "0", "4"])
    cli("pipeline with 3 test utterances", ["pipeline", "--out", str(work / "p"), "--test-utterances", "3"])
    cli("export to an unwritable place", ["export", "--preset", "tiny", "--out", "/proc/speechmpq.onnx"])
    cli("export to a directory that is a file", ["export", "--preset", "tiny",
                                                  "--out", str(work / "ok.flac" / "x.onnx")])
    cli("bench with a missing model", ["bench", "--models", str(work / "nope.onnx"), "--data", str(work),
                                       "--out", str(work / "bench")])
    # ---- the word LM decoder ----
    (work / "broken.arpa").write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\tA\n\\end\\\n")
    (work / "not-an-lm.arpa.gz").write_bytes(b"\x1f\x8b" + bytes(range(200)))
    (work / "bad-lexicon.txt").write_text("HELLO H E L L O |\nWORLD W O R L D 7 |\n")
    cli("LM decoder with a missing LM file", ["stream", str(MODEL), ok, "--decoder", "lm", "--lm",
                                              str(work / "no-such.arpa")])
    cli("LM whose header announces more n-grams than it has", ["stream", str(MODEL), ok, "--lm",
                                                               str(work / "broken.arpa")])
    cli("LM file that is gzip garbage", ["stream", str(MODEL), ok, "--lm", str(work / "not-an-lm.arpa.gz")])
    cli("lexicon with a token the model does not have", ["stream", str(MODEL), ok, "--lm",
                                                         str(ROOT / "models" / "lm.arpa.gz"), "--lexicon",
                                                         str(work / "bad-lexicon.txt")])
    cli("greedy decoder given an LM", ["stream", str(MODEL), ok, "--decoder", "greedy", "--lm",
                                       str(ROOT / "models" / "lm.arpa.gz")])
    cli("LM built from an empty text", ["lm", "--text", str(work / "empty.wav"), "--out",
                                        str(work / "lm.arpa")])
    return cases


def disk_full_case(work: Path) -> dict | None:
    """Export onto a 1 MiB tmpfs: a clear error and no partial file left."""
    mount = work / "full"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        return None
    try:
        result = _run([*SPEECHMPQ, "export", "--preset", "demo", "--out", str(mount / "model.onnx")])
        result["left_behind"] = sorted(p.name for p in mount.iterdir())
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)
    return {"group": "config", "case": "disk full (export onto a 1 MiB tmpfs)", "expect": "error",
            "argv": ["speechmpq", "export", "--preset", "demo", "--out", "FULL/model.onnx"], **result}


def judge(case: dict) -> bool:
    if case["traceback"] or case["code"] == "timeout":
        return False
    if case["expect"] == "error":
        ok = case["code"] != 0 and (case["stderr_last"].startswith("error:")
                                    or "error:" in case["stderr_last"])
        return ok and not case.get("left_behind")
    if case["expect"].startswith("exit 0"):
        return case["code"] == 0
    if case["expect"].startswith("transcript"):
        if case["expect"] == "transcript or error" and case["code"] != 0:
            return case["stderr_last"].startswith("error:")
        ok = case["code"] == 0 and bool(case["stdout"])
        return ok and ("warning" not in case["expect"] or bool(case["warnings"]))
    return False


RELIABILITY_TESTS = {  # file -> what its cases are
    "tests/core/test_robustness_cases.py": "bad input (the CLI cases above, in process; 2-hour file)",
    "tests/core/test_audio.py": "bad input (audio API)",
    "tests/runtime/test_stream.py": "bad input (runtime API)",
    "tests/runtime/test_model_info.py": "bad input (models)",
    "tests/train/test_trainer_cli.py": "bad input (training configs)",
    "tests/core/test_atomic_outputs.py": "fault: writer killed",
    "tests/train/test_kill_resume.py": "fault: training SIGKILLed",
    "tests/runtime/test_faults.py": "fault: runtime",
    "tests/edge_demo/test_server_hardening.py": "server",
    "tests/fuzz/test_properties.py": "property-based",
    "tests/runtime/test_soak.py": "soak (short)",
}


def run_tests() -> list[dict]:
    """Run the reliability test files (slow ones too) under pytest; one row per test case."""
    import xml.etree.ElementTree as ElementTree

    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-m", "slow or not slow", f"--junitxml={report}", *RELIABILITY_TESTS],
                       cwd=ROOT, check=False)
        tree = ElementTree.parse(report)
    rows = []
    for case in tree.iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome = tag if tag != "skipped" else f"skipped ({element.get('message', '')[:80]})"
        rows.append({"group": RELIABILITY_TESTS.get(module, module), "file": module, "test": case.get("name"),
                     "outcome": outcome, "seconds": float(case.get("time", 0))})
    return rows


def summaries(out: Path) -> list[str]:
    """The fuzz and soak figures committed beside OUT, as lines for the counts section."""
    import re

    lines = []
    fuzz = out.with_name("fuzz.md")
    if fuzz.is_file():
        text = fuzz.read_text()
        passing = sum(int(n) for n in re.findall(r"(\d+) passing", text))
        failing = sum(int(n) for n in re.findall(r"(\d+) failing", text))
        lines.append(f"- Fuzz run ({fuzz.name}): {passing:,} generated cases passed, {failing} failed.")
    for soak in sorted(out.parent.glob("soak*.json")):
        data = json.loads(soak.read_text())
        for result in data["results"]:
            drifts = [s["p99_drift"] for s in result["per_stream"] if s["p99_drift"] is not None]
            drifts = drifts or [float("nan")]
            pace = "paced in real time" if result.get("realtime") else "as fast as the model goes"
            lines.append(
                f"- Soak ({soak.name}), {result['streams']} stream(s) x {result['minutes']:g} min of audio, "
                f"{pace}, {result.get('allocator', 'glibc default')}: "
                f"RSS growth after warm-up {100 * result['rss_growth']:+.1f} %, p99 drift "
                f"{100 * min(drifts):+.1f} to {100 * max(drifts):+.1f} %, "
                f"{'PASS' if result['passed'] else 'FAIL'}.")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/robustness"))
    parser.add_argument("--long-hours", type=float, default=2.0)
    parser.add_argument("--tests", action="store_true", help="also run and list the reliability tests")
    args = parser.parse_args()
    from speechmpq.files import atomic_write
    from speechmpq.train.corpus.build import CorpusConfig, build_corpus

    work = Path(tempfile.mkdtemp(prefix="speechmpq-robustness-"))
    try:
        build_corpus(CorpusConfig(out=work / "tiny-data", hours=0.005, seed=3, splits=("train",)),
                     progress=False)
        cases = build_cases(work, args.long_hours)
        for index, case in enumerate(cases, 1):
            case.update(_run(case["argv"]))
            case["passed"] = judge(case)
            verdict = "ok  " if case["passed"] else "FAIL"
            print(f"[{index}/{len(cases)}] {verdict} {case['group']}: {case['case']}: "
                  f"exit {case['code']}, {case['stderr_last'][:100] or case['stdout'][:60]}", flush=True)
        full = disk_full_case(work)
        if full:
            full["passed"] = judge(full)
            cases.append(full)
            print(f"{'ok  ' if full['passed'] else 'FAIL'} disk full: {full['stderr_last'][:100]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    tests = run_tests() if args.tests else []
    for case in cases:
        case["argv"] = " ".join(str(a).replace(str(work), "TMP").replace(sys.executable, "python")
                                for a in case["argv"])
    lines = ["# Robustness: bad input through the command line", "",
             f"Command: `python experiments/robustness.py --out {args.out} --long-hours {args.long_hours:g}"
             f"{' --tests' if args.tests else ''}`  ",
             f"Date: {time.strftime('%Y-%m-%d')}. Machine: {os.cpu_count()} cores, {sys.platform}. "
             f"{sum(c['passed'] for c in cases)} of {len(cases)} cases behave as expected.", "",
             "| group | case | expected | exit | what the user sees (last stderr line, or the transcript) | "
             "traceback | peak RSS MiB | ok |", "|---|---|---|---|---|---|---|---|"]
    for case in cases:
        seen = case["stderr_last"]
        if case["code"] == 0 and case["stdout"]:
            seen = f"transcript: {case['stdout'][:70]}"
        if case.get("warnings"):
            seen += f" ({case['warnings'][0][:80]})"
        lines.append(f"| {case['group']} | {case['case']} | {case['expect']} | {case['code']} | "
                     f"{seen.replace('|', '/')[:160]} | {'YES' if case['traceback'] else 'no'} | "
                     f"{case.get('peak_rss_mib') or 0:.0f} | {'yes' if case['passed'] else 'NO'} |")
    lines.append("")
    if tests:
        groups: dict[str, list[dict]] = {}
        for row in tests:
            groups.setdefault(row["group"], []).append(row)
        passed = sum(row["outcome"] == "passed" for row in tests)
        counts = ["## Counts", "",
                  f"- Bad inputs through the command line: {len(cases)} (table above).",
                  *(f"- {group}: {len(rows)} test cases, {sum(r['outcome'] == 'passed' for r in rows)} "
                    "passed." for group, rows in groups.items()),
                  *summaries(args.out), ""]
        lines += [*counts, f"## Reliability tests ({passed} of {len(tests)} passed)", "",
                  "Run by the same command (`--tests`: pytest, slow tests included).", "",
                  "| group | test | outcome | seconds |", "|---|---|---|---|"]
        lines += [f"| {r['group']} | `{r['test']}` | {r['outcome']} | {r['seconds']:.1f} |" for r in tests]
        lines.append("")
    atomic_write(args.out.with_suffix(".md"), "\n".join(lines))
    atomic_write(args.out.with_suffix(".json"), json.dumps({"cli": cases, "tests": tests}, indent=1) + "\n")
    print(f"wrote {args.out}.md: {sum(c['passed'] for c in cases)} of {len(cases)} as expected")
    broken = [t for t in tests if t["outcome"] in ("failure", "error")]
    return 0 if all(c["passed"] for c in cases) and not broken else 1


if __name__ == "__main__":
    sys.exit(main())
