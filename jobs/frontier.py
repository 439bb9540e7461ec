"""The mixed-precision frontier: every method a user could pick instead, each judged against FP32
on the same verdict corpora, at the bits it really stores.

    speechmpq frontier --model models/demo --train data/synth/train --sets data/verdict-dev \\
        --role dev --out runs/frontier

Systems (``default_systems``; ``--only`` picks some):

    fp32        the reference, exported once; every onnxruntime peer starts from this graph
    ort-*       onnxruntime's MatMulNBitsQuantizer on the searched layers (export/ort_weight_only.py):
                default/hqq/rtn/kquant/gptq, 2/4/8 bits, blocks 32/128, and hand mixes by layer type
    rtn-*       ours: round to nearest with MSE step sizes, per channel or per group, no training
    uniform-*, two-stage-*, one-stage-*     ``speechmpq quantize`` runs, then exported

Every .onnx is exported with float activations (MatMulNBits accuracy level 0 or DequantizeLinear),
so the rows differ in their weights only. Per system: OUT/NAME/{model.onnx, system.json}; the WER
rows under OUT/tsv/; the dev or test verdicts in OUT/verdicts_ROLE.json. Finished systems are kept
(the command resumes). ``jobs/frontier_report.py`` writes the table and plot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from speechmpq.files import atomic_write

FAMILIES = ("fp32", "ort", "rtn", "uniform", "two-stage", "one-stage")
CORPORA = ("grammar-text", "heldout-text")
REAL_SPEECH = "real-speech"  # the corpus of a manifest given as --sets
DECODERS = ("greedy", "lm")


@dataclass(frozen=True)
class System:
    name: str
    family: str  # one of FAMILIES
    # ort: an export/ort_weight_only spec; rtn: {"bits", "granularity", "group_size"};
    # uniform/two-stage/one-stage: speechmpq quantize flags (name -> value; True: a bare flag)
    settings: dict = field(default_factory=dict)
    label: str = ""  # what the row is, in words

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, not {self.family!r}")


def _ort(name: str, label: str, **spec) -> System:
    return System(name, "ort", spec, label)


def _quantize(name: str, family: str, label: str, **flags) -> System:
    return System(name, family, {"method": family, **flags}, label)


def default_systems() -> list[System]:
    systems = [System("fp32", "fp32", label="the full-precision model")]
    for bits, block in ((2, 32), (2, 128), (4, 32), (4, 128), (8, 128)):
        systems.append(_ort(f"ort-default-{bits}b-g{block}", f"onnxruntime default (RTN, asymmetric), "
                            f"{bits} bits, blocks of {block}", algo="default", bits=bits, block=block))
    for bits, block in ((2, 32), (2, 128), (4, 32), (4, 128)):
        systems.append(_ort(f"ort-hqq-{bits}b-g{block}", f"onnxruntime HQQ, {bits} bits, blocks of {block}",
                            algo="hqq", bits=bits, block=block))
    for algo, words in (("rtn", "RTN"), ("kquant", "k-quant")):
        for block in (32, 128):
            systems.append(_ort(f"ort-{algo}-4b-g{block}", f"onnxruntime {words}, 4 bits, blocks of {block}",
                                algo=algo, bits=4, block=block))
    systems.append(_ort("ort-gptq-4b-g32", "onnxruntime GPTQ, 4 bits, blocks of 32 (it also quantizes the "
                        "feature projection and CTC head: onnxruntime 1.32 ignores nodes_to_exclude)",
                        algo="gptq", bits=4, block=32))
    for ffn_block in (32, 128):
        systems.append(_ort(f"ort-mix-attn2b-g32-ffn4b-g{ffn_block}",
                            f"hand mix by layer type (onnxruntime default): attention 2 bits in blocks of "
                            f"32, FFN 4 bits in blocks of {ffn_block}",
                            mix={"attention": {"algo": "default", "bits": 2, "block": 32},
                                 "ffn": {"algo": "default", "bits": 4, "block": ffn_block}}))
    for bits in (2, 3, 4, 8):
        systems.append(System(f"rtn-pc-{bits}b", "rtn", {"bits": bits, "granularity": "per-channel"},
                              f"ours: round to nearest, {bits} bits, per-channel MSE steps"))
    for bits, group in ((2, 32), (2, 128), (4, 32), (4, 128)):
        systems.append(System(f"rtn-g{group}-{bits}b", "rtn",
                              {"bits": bits, "granularity": "per-group", "group_size": group},
                              f"ours: round to nearest, {bits} bits, MSE steps per block of {group}"))
    return systems + trained_systems()


# every trained system: 200 steps of 32 s batches (+ 40 Pass-2 steps for one-stage); weight lr 2e-5
# (the pipeline's 2e-6 x 10) or 2e-4 (speechmpq quantize's default)
TRAINING = {"steps": 200, "lr": 2e-5, "batch-seconds": 32}
HIGH_LR = {**TRAINING, "lr": 2e-4}
PAIRS = {"granularity": "per-group", "candidates": [2, 4, 8], "group-sizes": [32, 128, 128],
         "budget": "stored-bits"}


def trained_systems() -> list[System]:
    """Uniform QAT, two-stage and one-stage, in the paper's per-tensor setting and with group
    scales; one-stage over (bits, block) pairs with a budget in stored bits."""
    pass2 = {"pass2-steps": 40}
    per_tensor = {"granularity": "per-tensor"}
    systems = [
        _quantize("uniform-g32-2b", "uniform", "uniform QAT, 2 bits, learned steps per block of 32, "
                  "lr 2e-5",
                  bits=2, granularity="per-group", **{"group-size": 32}, **TRAINING),
        *[_quantize(f"one-stage-pairs-s{target}", "one-stage", "one-stage MPQ over (bits, block) pairs "
                    f"2/32, 4/128, 8/128, budget {target} stored bits, + Pass 2, lr 2e-5", **PAIRS,
                    **{"target-bits": target}, **TRAINING, **pass2) for target in (3.5, 3.0)],
        # levers: a 10x higher learning rate; the steps (and so the rounding) learned with the
        # weights nearly frozen
        _quantize("uniform-g32-2b-lr2e-4", "uniform", "uniform QAT, 2 bits, learned steps per block of 32, "
                  "lr 2e-4", bits=2, granularity="per-group", **{"group-size": 32}, **HIGH_LR),
        _quantize("one-stage-pairs-s3.5-lr2e-4", "one-stage", "as one-stage-pairs-s3.5, lr 2e-4", **PAIRS,
                  **{"target-bits": 3.5}, **HIGH_LR, **pass2),
        _quantize("one-stage-pairs-s3.0-steps", "one-stage", "as one-stage-pairs-s3.0, weight lr 2e-6, "
                  "step lr 2e-4", **PAIRS, **{"target-bits": 3.0}, **{**TRAINING, "lr": 2e-6},
                  **{"step-lr": 2e-4}, **pass2),
    ]
    # the paper's setting: per-tensor steps, code bits, speechmpq quantize's learning rate
    systems += [
        _quantize(f"uniform-pt-{bits}b", "uniform", f"uniform QAT, {bits} bits, per-tensor steps "
                  "(the paper's baseline), lr 2e-4", bits=bits, **per_tensor, **HIGH_LR) for bits in (4, 3)]
    systems += [
        _quantize("two-stage-pt-3.0", "two-stage", "two-stage (Gumbel search, then QAT from FP32), target "
                  "3.0 code bits, per-tensor steps, lr 2e-4", **{"target-bits": 3.0}, **per_tensor,
                  **HIGH_LR),
        *[_quantize(f"one-stage-pt-{target}", "one-stage", f"one-stage MPQ (the paper), target {target} code "
                    "bits, per-tensor steps, + Pass 2, lr 2e-4", **{"target-bits": target}, **per_tensor,
                    **HIGH_LR, **pass2) for target in (3.0, 3.5, 4.0)],
        # the main job's default until this frontier (models/demo-mpq of 2026-12-06)
        _quantize("one-stage-pc-4.0-lr2e-6", "one-stage", "one-stage MPQ, target 4.0 code bits, per-channel "
                  "steps, + Pass 2, lr 2e-6 (the pipeline's default before this frontier)",
                  **{"target-bits": 4.0}, granularity="per-channel", **{**TRAINING, "lr": 2e-6}, **pass2),
    ]
    return systems


@dataclass
class FrontierConfig:
    model: Path  # the full-precision model directory (Hugging Face format)
    train: Path  # training split for the quantize runs (and GPTQ's calibration)
    sets: Path  # verdict corpora folder (speechmpq verdict-corpora --out), or one manifest .tsv
    role: str  # dev: these sets choose; test: they only judge
    out: Path  # run folder
    lm: Path  # word n-gram LM for the "lm" decoder
    systems: list[System] = field(default_factory=default_systems)
    threads: int = 2  # onnxruntime threads while decoding
    chosen_on: str | None = None  # role test: which dev results chose the systems' settings
    lm_weight: float | None = None  # the LM decoder's weights (None: DecoderConfig's defaults)
    word_score: float | None = None

    def __post_init__(self):
        self.model, self.train, self.sets, self.out, self.lm = map(
            Path, (self.model, self.train, self.sets, self.out, self.lm))
        if self.role not in ("dev", "test"):
            raise ValueError(f"role must be dev or test, not {self.role!r}")
        if self.role == "test" and not self.chosen_on:
            raise ValueError("role test needs chosen_on: the dev results that chose the settings")
        names = [s.name for s in self.systems]
        if len(set(names)) != len(names):
            raise ValueError("system names must be distinct")


def verdict_sets(sets: Path, role: str) -> tuple[dict, dict]:
    """(sets: name -> utterances, pools: corpus -> [split sets]) of a verdict corpora folder, or of one
    manifest (.tsv, e.g. real speech): then a single corpus named ``REAL_SPEECH``."""
    from speechmpq.datasets import read_dataset
    from speechmpq.jobs.verdict_corpora import SPLITS

    if sets.suffix == ".tsv":
        if not sets.is_file():
            raise ValueError(f"{sets}: no such manifest")
        return {REAL_SPEECH: read_dataset(sets)}, {REAL_SPEECH: [REAL_SPEECH]}
    found, pools = {}, {}
    for corpus in CORPORA:
        for split in SPLITS[role]:
            folder = sets / corpus / split
            if not (folder / "utterances.tsv").is_file():
                raise ValueError(f"{folder}: no verdict corpus here (speechmpq verdict-corpora --role "
                                 f"{role} --out {sets})")
            found[f"{corpus}/{split}"] = read_dataset(folder)
        pools[corpus] = [f"{corpus}/{split}" for split in SPLITS[role]]
    return found, pools


def run_frontier(cfg: FrontierConfig, log=print) -> dict:
    """Build and judge every system not done yet; returns the role's verdicts file content."""
    from speechmpq.runtime import DecoderConfig

    cfg.out.mkdir(parents=True, exist_ok=True)
    sets, pools = verdict_sets(cfg.sets, cfg.role)
    weights = {"lm_weight": cfg.lm_weight, "word_score": cfg.word_score}  # None: DecoderConfig's defaults
    decoders = {"greedy": DecoderConfig("greedy"), "lm": DecoderConfig("lm", lm=str(cfg.lm), **weights)}
    verdicts_path = cfg.out / f"verdicts_{cfg.role}.json"
    done = json.loads(verdicts_path.read_text()) if verdicts_path.exists() else {
        "role": cfg.role, "chosen_on": cfg.chosen_on, "sets": str(cfg.sets), "corpora": list(pools),
        "lm": {"path": str(cfg.lm), **weights}, "systems": {}}
    if cfg.chosen_on:  # a later test run names every finalist so far: its statement replaces the earlier one
        done["chosen_on"] = cfg.chosen_on
    if done.get("corpora", list(CORPORA)) != list(pools):
        raise ValueError(f"{verdicts_path} was judged on {done.get('corpora', list(CORPORA))}, not "
                         f"{list(pools)}: use another --out")
    fp32 = _build(System("fp32", "fp32"), cfg, log)
    if "fp32" not in done["systems"]:  # the reference's own WER, whichever systems were asked for
        done["systems"]["fp32"] = {**fp32, **_judge("fp32", cfg, sets, pools, decoders, log)}
    failed = []
    for system in cfg.systems:
        if system.name in done["systems"]:
            continue
        try:
            record = _build(system, cfg, log) if system.family != "fp32" else fp32
        except Exception as error:  # one broken system must not stop the others (retried next run)
            log(f"{system.name}: FAILED ({type(error).__name__}: {error})")
            failed.append(system.name)
            continue
        record.update(_judge(system.name, cfg, sets, pools, decoders, log))
        done["systems"][system.name] = record
        atomic_write(verdicts_path, json.dumps(done, indent=1) + "\n")
    done["failed"] = failed
    return done


def _build(system: System, cfg: FrontierConfig, log) -> dict:
    """The system's .onnx and system.json (kept when present)."""
    folder = cfg.out / system.name
    summary = folder / "system.json"
    if summary.is_file() and (folder / "model.onnx").is_file():
        return json.loads(summary.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    log(f"{system.name}: building")
    began = time.perf_counter()
    if system.family == "fp32":
        record = _export(cfg.model, folder / "model.onnx", plan=None)
    elif system.family == "ort":
        record = _build_ort(system, cfg, folder)
    elif system.family == "rtn":
        record = _build_rtn(system, cfg, folder)
    else:
        record = _build_quantized(system, cfg, folder, log)
    record.update({"name": system.name, "family": system.family, "settings": system.settings,
                   "label": system.label, "build_seconds": round(time.perf_counter() - began, 1)})
    atomic_write(summary, json.dumps(record, indent=1) + "\n")
    return record


def _export(model_dir: Path, out: Path, plan: Path | None) -> dict:
    """Float activations, no kernel choice: MatMulNBits at accuracy level 0 (PyTorch's numerics)."""
    from speechmpq.export import ExportConfig, Source, export_onnx

    began = time.perf_counter()
    export_onnx(Source(model_dir=model_dir, plan=plan), out, ExportConfig(kernel_table="none"),
                progress=False)
    return {"export_seconds": round(time.perf_counter() - began, 1)}


def _build_ort(system: System, cfg: FrontierConfig, folder: Path) -> dict:
    import onnx

    from speechmpq.export.ort_weight_only import quantize_weight_only, save, searched_matmuls, stored_bits

    fp32_path = cfg.out / "fp32" / "model.onnx"
    fp32 = onnx.load(str(fp32_path))
    calibration = _calibration(cfg, fp32) if _uses(system.settings, "gptq") else None
    began = time.perf_counter()
    quantized = quantize_weight_only(fp32, system.settings, calibration)
    seconds = time.perf_counter() - began
    save(quantized, folder / "model.onnx")
    fp32_export = json.loads((cfg.out / "fp32" / "system.json").read_text())["export_seconds"]
    sizes = stored_bits(quantized, searched_matmuls(fp32))
    record = {"stored_bits_per_weight": sizes["stored_bits_per_weight"],
              "average_bits": sizes["average_bits"],
              "layer_bits": sizes["layer_bits"], "compression_seconds": round(fp32_export + seconds, 1)}
    if _uses(system.settings, "gptq"):
        record["codes_equal_rtn"] = _gptq_equals_rtn(fp32, quantized, system.settings["block"])
    return record


def _uses(spec: dict, algo: str) -> bool:
    from speechmpq.export.ort_weight_only import spec_parts

    return any(part.get("algo") == algo for part in spec_parts(spec))


def _calibration(cfg: FrontierConfig, fp32, utterances: int = 8) -> list[dict]:
    """GPTQ's calibration feeds: the first training utterances, one window each, and no cached frames
    where the graph takes them (a graph with the front-end cache)."""
    import numpy as np

    from speechmpq.audio import load_audio
    from speechmpq.datasets import read_dataset

    inputs = {i.name: i for i in fp32.graph.input}
    extra = {}
    if "cached_features" in inputs:  # (batch, frames, hidden): the hidden size from the graph itself
        hidden = inputs["cached_features"].type.tensor_type.shape.dim[2].dim_value
        extra["cached_features"] = np.zeros((1, 0, hidden), np.float32)
    return [{"input_values": load_audio(utterance.path).astype(np.float32)[None], **extra}
            for utterance in read_dataset(cfg.train)[:utterances]]


def _gptq_equals_rtn(fp32, gptq, block: int) -> float:
    """Share of GPTQ's packed code bytes over the searched layers equal to onnxruntime RTN's at the
    same block (1.0: the same codes). GPTQ in onnxruntime 1.32 ignores ``nodes_to_exclude`` and also
    quantizes the feature projection and the CTC head; those are left out of the comparison."""
    import numpy as np
    from onnx import numpy_helper

    from speechmpq.export.ort_weight_only import quantize_weight_only, searched_matmuls

    rtn = quantize_weight_only(fp32, {"algo": "rtn", "bits": 4, "block": block})
    searched = {f"{name}_Q4" for name in searched_matmuls(fp32)}

    def codes(model):
        initializers = {t.name: t for t in model.graph.initializer}
        return np.concatenate([numpy_helper.to_array(initializers[n.input[1]]).ravel()
                               for n in sorted(model.graph.node, key=lambda n: n.name)
                               if n.op_type == "MatMulNBits" and n.name in searched])

    return float(np.mean(codes(gptq) == codes(rtn)))


def _build_rtn(system: System, cfg: FrontierConfig, folder: Path) -> dict:
    from speechmpq import bitplan
    from speechmpq.jobs.frontier_stats import uniform_plan

    settings = system.settings
    plan = uniform_plan(cfg.model, settings["bits"], settings["granularity"], settings.get("group_size"))
    atomic_write(folder / "bitplan.json", bitplan.dumps(plan))
    record = _export(cfg.model, folder / "model.onnx", folder / "bitplan.json")
    record.update(_plan_sizes(plan))
    record["compression_seconds"] = record["export_seconds"]
    return record


def _plan_sizes(plan: dict) -> dict:
    from speechmpq import bitplan

    return {"stored_bits_per_weight": bitplan.stored_bits_per_weight(plan, containers=True),
            "average_bits": bitplan.average_bits(plan["layers"]),
            "layer_bits": {name: e["bits"] for name, e in plan["layers"].items() if e.get("searched", True)}}


def _build_quantized(system: System, cfg: FrontierConfig, folder: Path, log) -> dict:
    from speechmpq import bitplan
    from speechmpq.jobs.frontier_stats import search_stats

    run = folder / "run"
    flags = []
    for key, value in system.settings.items():
        if value is True:
            flags.append(f"--{key}")
        elif isinstance(value, list | tuple):
            flags += [f"--{key}", *map(str, value)]
        else:
            flags += [f"--{key}", str(value)]
    command = [sys.executable, "-m", "speechmpq", "quantize", "--model", str(cfg.model), "--data",
               str(cfg.train), "--out", str(run), *flags, "--quiet"]
    began = time.perf_counter()
    with open(folder / "quantize.out", "a") as output:
        result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = (folder / "quantize.out").read_text().strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"{system.name}: speechmpq quantize failed: {tail[0]}")
    seconds = time.perf_counter() - began
    log(f"{system.name}: quantized in {seconds:.0f} s")
    record = _export(run / "model", folder / "model.onnx", plan=None)
    plan = bitplan.load(run / "model" / "bitplan.json")
    record.update(_plan_sizes(plan))
    record["compression_seconds"] = compression_seconds(run, record["export_seconds"])
    record["stats"] = search_stats(cfg.model, run / "model")
    return record


def compression_seconds(run: Path, export_seconds: float) -> float:
    """The quantize run's own training time (summed over resumed parts: a resumed run's wall time
    would count only its last part) plus the export."""
    summary = json.loads((run / "summary.json").read_text())
    return round(summary["compression_seconds"] + export_seconds, 1)


def _judge(name: str, cfg: FrontierConfig, sets: dict, pools: dict, decoders: dict, log) -> dict:
    from speechmpq.jobs.verdicts import decode_sets, judge, lossless_everywhere

    tsv_root = cfg.out / f"tsv_{cfg.role}"
    corpora = list(pools)
    models = {n: cfg.out / n / "model.onnx" for n in ("fp32", name)
              if not (tsv_root / n / corpora[0] / DECODERS[0] / "utterances.tsv").is_file()}
    if models:
        results, _ = decode_sets(models, sets, decoders, tsv_root, pools, threads=cfg.threads)
        for model_name, result in results.items():
            atomic_write(tsv_root / model_name / "results.json", json.dumps(result, indent=1) + "\n")
    record = {"results": json.loads((tsv_root / name / "results.json").read_text())}
    if name != "fp32":
        record["verdicts"] = judge(tsv_root, "fp32", name, corpora, list(DECODERS))
        log(f"{name}: lossless on {cfg.role} {'yes' if lossless_everywhere(record['verdicts']) else 'NO'}")
    return record

