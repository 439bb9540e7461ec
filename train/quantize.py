"""``speechmpq quantize``: one-stage mixed-precision QAT (Xu et al., ICASSP 2025) and its baselines.

A run is a list of phases (see ``QuantizeConfig.phases``), each a training loop over the same data
with loss = CTC(student) + beta * KL(FP teacher ‖ student) [+ size term while searching]:

    one-stage:        search (weights and bit choices together) [-> pass2 with bits fixed]
    uniform:          qat at --bits everywhere
    two-stage nas:    search (bits kept, weights thrown away) -> qat from FP weights
    two-stage kl:     sensitivity + knapsack                  -> qat from FP weights

The run folder holds checkpoint.pt (replaced atomically), train_log.jsonl, bitplan.json, model/
(the quantized model directory) and summary.json. One training phase is quantize_phase.py, the
parts of its step (student, optimizer, losses, size term, bits-window fit) are quantize_step.py, and
the loop (resume position, non-finite guard, log and checkpoint cadence) is loop.py, shared with
train-fp. Running the same command again resumes; each step's dropout and Gumbel draws are seeded
from (seed, phase, step, rank), so a resumed run repeats an uninterrupted one. Under ``torchrun``
every rank takes its share of each global batch and the losses are normalised by global counts, so
N processes compute the gradient of one.
"""

from __future__ import annotations

import json
import math
import time

import torch
import torch.distributed as dist

from speechmpq import bitplan as bitplan_lib
from speechmpq.errors import SpeechmpqError
from speechmpq.files import atomic_write
from speechmpq.train import supernet as sn
from speechmpq.train.data import collate, training_utterances
from speechmpq.train.loop import bf16_enabled, check_resumable, load_checkpoint, loader_workers
from speechmpq.train.quantize_config import RESUMABLE_CHANGES, QuantizeConfig
from speechmpq.train.quantize_phase import QuantizeRun, train_phase
from speechmpq.train.quantize_step import Context, build_student
from speechmpq.train.run_folder import RunLock, append_log


def _open_run(cfg: QuantizeConfig, progress: bool) -> QuantizeRun:
    """Device, data, the frozen teacher and the run position (fresh, or from the checkpoint)."""
    from speechmpq.train.models import load_model, parameter_breakdown

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = Context(cfg)
    use_bf16, workers = bf16_enabled(cfg.bf16, ctx.device), loader_workers(cfg.workers, ctx.device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(cfg.out) if ctx.main else None
    utterances, seconds = training_utterances(cfg.train_data, cfg.max_utterance_seconds)
    if not utterances:
        raise SpeechmpqError(f"{cfg.train_data}: no utterances of at most {cfg.max_utterance_seconds} s")
    teacher = load_model(cfg.model).to(ctx.device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    state = {"phase": 0, "step": 0, "total_steps": 0, "epoch": 0, "batch_in_epoch": 0, "bits": None,
             "stage1_bits": None, "phase_seconds": {}, "window_repairs": 0}
    ckpt_path = cfg.out / "checkpoint.pt"
    checkpoint = load_checkpoint(ckpt_path)
    run = QuantizeRun(cfg, ctx, teacher, utterances, seconds, state, checkpoint, use_bf16, workers,
                      progress, lock)
    phases = cfg.phases()
    if checkpoint is not None:
        check_resumable(dict(checkpoint["config"]), cfg.to_dict(), RESUMABLE_CHANGES, ckpt_path)
        state.update(checkpoint["state"])
        run.log({"event": "resume", "phase": phases[min(state["phase"], len(phases) - 1)][0],
                 "step": state["step"], "time": time.time()})
    else:
        run.log({"event": "start", "config": cfg.to_dict(), "device": str(ctx.device), "world": ctx.world,
                 "bf16": use_bf16, "parameters": parameter_breakdown(teacher),
                 "train_utterances": len(utterances), "train_hours": float(seconds.sum() / 3600),
                 "time": time.time()})
    return run


def _run_sensitivity(run: QuantizeRun) -> None:
    """Two-stage kl stage 1: sensitivities on the first training batches, then the knapsack."""
    from speechmpq.train.sensitivity import kl_sensitivity, knapsack

    cfg, state, sampler, phase_start = run.cfg, run.state, run.sampler, time.time()
    model, resolved = build_student(cfg, "search", None, run.ctx.device)
    searched = [n for n, setting in resolved.items() if setting == "search"]
    sampler.epoch, sampler.start_batch = 0, 0
    batches = [collate([run.dataset[i] for i in indices])
               for indices, _ in zip(sampler, range(cfg.sensitivity_batches), strict=False)]
    sens = kl_sensitivity(run.teacher, searched, cfg.supernet.candidates, batches,
                          cfg.supernet.granularity == "per-channel", run.progress and run.ctx.main,
                          cfg.supernet.group_size)
    sizes = {n: q.weight_numel for n, q in sn.quantizers(model).items() if n in sens}
    chosen = knapsack(sens, sizes, cfg.target_bits)
    fixed = {n: q.candidates[0] for n, q in sn.quantizers(model).items() if n not in chosen}
    state["stage1_bits"] = state["bits"] = {**fixed, **chosen}
    table = {n: {str(b): v for b, v in s.items()} for n, s in sens.items()}
    run.log({"event": "sensitivity", "sensitivity": table, "bits": state["bits"], "time": time.time()})
    state["phase_seconds"]["sensitivity"] = (state["phase_seconds"].get("sensitivity", 0.0)
                                             + time.time() - phase_start)
    state.update(phase=state["phase"] + 1, step=0)
    run.save({"model": None, "state": state, "config": cfg.to_dict()})


def _finish(run: QuantizeRun, model) -> dict:
    """Write bitplan.json, model/ and summary.json (rank 0); returns the summary."""
    from speechmpq.train.models import parameter_breakdown
    from speechmpq.train.qmodel import save_quantized

    cfg, state, teacher, ctx = run.cfg, run.state, run.teacher, run.ctx
    model.config.apply_spec_augment = teacher.config.apply_spec_augment
    if hasattr(teacher.config, "trainable_encoder_layers"):
        model.config.trainable_encoder_layers = teacher.config.trainable_encoder_layers
    layers = sn.plan_layers(model)
    candidates = [cfg.bits] if cfg.method == "uniform" else list(cfg.supernet.candidates)
    plan = bitplan_lib.make_plan(layers, cfg.method, candidates, cfg.supernet.granularity,
                                 None if cfg.method == "uniform" else cfg.target_bits, cfg.bits_window_range,
                                 cfg.supernet.group_size)
    if cfg.method != "uniform":
        plan["budget"] = cfg.budget  # what target_bits and window count (bitplan: codes or stored bits)
    total = sum(state["phase_seconds"].values())
    breakdown = parameter_breakdown(teacher)
    bias = sum(p.numel() for n, p in teacher.named_parameters() if n.endswith(".bias"))
    summary = {
        "method": cfg.method, "search": cfg.search if cfg.method == "two-stage" else None,
        "bits": cfg.bits, "target_bits": plan["target_bits"], "window": plan["window"],
        "budget": plan.get("budget"),
        "average_bits": plan["average_bits"],
        "stored_bits_per_weight": round(bitplan_lib.stored_bits_per_weight(plan), 6),
        "steps": cfg.steps, "pass2_steps": cfg.pass2_steps,
        "compression_seconds": round(total, 2),
        "phase_seconds": {k: round(v, 2) for k, v in state["phase_seconds"].items()},
        "window_repairs": state.get("window_repairs", 0), "cost": cfg.cost,
        "skipped_steps": state.get("skipped_steps", 0),
        "predicted_latency_ratio": state.get("latency_ratio"), "device": str(ctx.device), "world": ctx.world,
        "parameters": breakdown["total"], "bias_parameters": bias,
        "bytes_paper": bitplan_lib.model_bytes(plan, breakdown["total"], bias, 8),
        "bytes_fp32_others": bitplan_lib.model_bytes(plan, breakdown["total"], bias, 32),
        "bytes_fp32": breakdown["total"] * 4,
    }  # fmt: skip
    if ctx.main:
        save_quantized(model, plan, cfg.out / "model", cfg.model,
                       extra_files={"quantize_summary.json": json.dumps(summary, indent=1) + "\n"})
        atomic_write(cfg.out / "bitplan.json", bitplan_lib.dumps(plan))
        atomic_write(cfg.out / "summary.json", json.dumps(summary, indent=1) + "\n")
        append_log(cfg.out / "train_log.jsonl", {"event": "done", **summary, "time": time.time()})
    if ctx.world > 1:
        dist.barrier()
    return summary


def quantize_model(cfg: QuantizeConfig, progress: bool = True) -> dict:
    """Run (or resume) a quantization run; returns summary.json's content once done, else {}."""
    run = _open_run(cfg, progress)
    state, phases = run.state, cfg.phases()
    stop_total = cfg.stop_at_step or math.inf
    model, previous_state = None, None
    while state["phase"] < len(phases) and state["total_steps"] < stop_total:
        phase, steps = phases[state["phase"]]
        if phase == "sensitivity":
            _run_sensitivity(run)
            continue
        model = train_phase(run, phase, steps, previous_state)
        if model is None:  # stopped at --stop-at-step
            break
        previous_state = model.state_dict()
    if state["phase"] < len(phases):
        run.log({"event": "stopped", "total_steps": state["total_steps"], "time": time.time()})
        if run.lock:
            run.lock.release()
        return {}
    if model is None:  # resumed after the last phase had finished: rebuild from the checkpoint
        saved = torch.load(cfg.out / "checkpoint.pt", map_location="cpu", weights_only=False)
        last = phases[-1][0]
        model, _ = build_student(cfg, "qat" if last == "qat" else "pass2",
                                 state["stage1_bits"] if last == "qat" else state["bits"], run.ctx.device)
        model.load_state_dict(saved["model"])
    summary = _finish(run, model)
    if run.lock:
        run.lock.release()
    return summary
