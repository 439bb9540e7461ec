"""``speechmpq quantize``: one-stage mixed-precision QAT (Xu et al., ICASSP 2025) and its baselines.

A run is a list of phases (see ``QuantizeConfig.phases``), each a training loop over the same data
with loss = CTC(student) + beta * KL(FP teacher ‖ student) [+ size term while searching]:

    one-stage:        search (weights and bit choices together) [-> pass2 with bits fixed]
    uniform:          qat at --bits everywhere
    two-stage nas:    search (bits kept, weights thrown away) -> qat from FP weights
    two-stage kl:     sensitivity + knapsack                  -> qat from FP weights

The run folder holds checkpoint.pt (replaced atomically), train_log.jsonl, bitplan.json, model/
(the quantized model directory) and summary.json. The parts of a step (student, optimizer, losses,
size term, window fit) live in quantize_step.py. Running the same command again resumes; each
step's dropout and Gumbel draws are seeded from (seed, phase, step, rank), so a resumed run repeats
an uninterrupted one. Under ``torchrun`` every rank takes its share of each global batch and the
losses are normalised by global counts, so N processes compute the gradient of one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from speechmpq import bitplan as bitplan_lib
from speechmpq.errors import SpeechmpqError
from speechmpq.files import atomic_write
from speechmpq.train import supernet as sn
from speechmpq.train.quantize_config import RESUMABLE_CHANGES, QuantizeConfig
from speechmpq.train.quantize_step import (
    Context,
    RankSlice,
    build_optimizer,
    build_student,
    fit_window,
    model_tau,
    size_term,
    step_losses,
)
from speechmpq.train.run_folder import RunLock, append_log, save_checkpoint


def _check_resumable(saved: dict, cfg: QuantizeConfig, path: Path) -> None:
    current = cfg.to_dict()
    changed = [k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k]]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} → {current[k]!r}" for k in changed)
        raise SpeechmpqError(f"{path} belongs to a run with other settings ({details}); "
                             "use a new --out folder or the original settings")


def quantize(cfg: QuantizeConfig, progress: bool = True) -> dict:
    """Run (or resume) a quantization run; returns summary.json's content once done, else {}."""
    import numpy as np
    from tqdm import tqdm

    from speechmpq.datasets import read_dataset
    from speechmpq.train.data import SecondsBatchSampler, SpeechDataset, collate, utterance_seconds
    from speechmpq.train.models import load_model, parameter_breakdown
    from speechmpq.train.qmodel import save_quantized

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ctx = Context(cfg)
    use_bf16 = cfg.bf16 and (ctx.device.type == "cuda" or torch.backends.mkldnn.is_available())
    workers = cfg.workers if cfg.workers >= 0 else (
        1 if ctx.device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1)))
    cfg.out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(cfg.out) if ctx.main else None
    log_path, ckpt_path = cfg.out / "train_log.jsonl", cfg.out / "checkpoint.pt"

    def log(record):
        if ctx.main:
            append_log(log_path, record)

    utterances = read_dataset(cfg.train_data)
    seconds = utterance_seconds(utterances)
    keep = [i for i, s in enumerate(seconds) if s <= cfg.max_utterance_seconds]
    utterances, seconds = [utterances[i] for i in keep], seconds[keep]
    if not utterances:
        raise SpeechmpqError(f"{cfg.train_data}: no utterances of at most {cfg.max_utterance_seconds} s")
    teacher = load_model(cfg.model).to(ctx.device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    phases = cfg.phases()
    state = {"phase": 0, "step": 0, "total_steps": 0, "epoch": 0, "batch_in_epoch": 0, "bits": None,
             "stage1_bits": None, "phase_seconds": {}, "window_repairs": 0}
    checkpoint = None
    if ckpt_path.exists():
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_resumable(dict(checkpoint["config"]), cfg, ckpt_path)
        state.update(checkpoint["state"])
        log({"event": "resume", "phase": phases[min(state["phase"], len(phases) - 1)][0],
             "step": state["step"], "time": time.time()})
    else:
        log({"event": "start", "config": cfg.to_dict(), "device": str(ctx.device), "world": ctx.world,
             "bf16": use_bf16, "parameters": parameter_breakdown(teacher),
             "train_utterances": len(utterances), "train_hours": float(seconds.sum() / 3600),
             "time": time.time()})
    sampler = SecondsBatchSampler(seconds, cfg.batch_seconds, cfg.seed,
                                  min_size=max(cfg.min_batch_utterances, ctx.world))
    dataset = SpeechDataset(utterances)
    stop_total = cfg.stop_at_step or math.inf
    model, previous_state = None, None

    while state["phase"] < len(phases) and state["total_steps"] < stop_total:
        phase, steps = phases[state["phase"]]
        phase_start = time.time()
        if phase == "sensitivity":
            _run_sensitivity(cfg, ctx, teacher, sampler, dataset, state, log, progress)
            state["phase_seconds"][phase] = state["phase_seconds"].get(phase, 0.0) + time.time() - phase_start
            state.update(phase=state["phase"] + 1, step=0)
            if ctx.main:
                save_checkpoint(ckpt_path, {"model": None, "state": state, "config": cfg.to_dict()})
            continue
        model, resolved = build_student(cfg, phase, state["stage1_bits"] if phase == "qat" else state["bits"],
                                   ctx.device)
        if ctx.main and progress and state["total_steps"] == 0:
            print(sn.layer_table(resolved))
        optimizer, schedule = build_optimizer(model, cfg, steps)
        if checkpoint is not None and checkpoint.get("model") is not None and state["step"] > 0:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
        elif phase == "pass2" and state["step"] == 0:  # continue from the finalized search
            model.load_state_dict(previous_state if previous_state is not None else checkpoint["model"])
        checkpoint = None
        trained = torch.nn.parallel.DistributedDataParallel(model) if ctx.world > 1 else model
        searching = phase == "search"
        latencies = None
        if searching and cfg.cost != "bits":
            from speechmpq.train.latency_cost import latency_summary, latency_term, layer_latencies

            latencies = layer_latencies(model, cfg.kernel_table)

        def checkpoint_now(model=model, optimizer=optimizer, schedule=schedule):
            if ctx.main:
                save_checkpoint(ckpt_path, {
                    "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "state": state, "config": cfg.to_dict()})

        bar = tqdm(total=steps, initial=state["step"], desc=f"{cfg.method} {phase}", unit="step",
                   disable=not (progress and ctx.main))
        window = {"ctc": 0.0, "kl": 0.0, "size": 0.0, "n": 0, "start": time.time()}
        while state["step"] < steps and state["total_steps"] < stop_total:
            sampler.epoch, sampler.start_batch = state["epoch"], state["batch_in_epoch"]
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=RankSlice(sampler, ctx.rank, ctx.world), collate_fn=collate,
                num_workers=workers, prefetch_factor=4 if workers else None)
            for batch in loader:
                step_start = time.time()
                step_seed = [cfg.seed, state["phase"], state["step"]]
                rank_seed = int(np.random.SeedSequence(step_seed + [ctx.rank]).generate_state(1)[0])
                torch.manual_seed(rank_seed)
                np.random.seed(rank_seed)
                model.train()
                if searching:
                    sn.set_temperature(model, sn.tau_at(state["step"], steps, cfg.tau_start, cfg.tau_end))
                    generator = torch.Generator().manual_seed(
                        int(np.random.SeedSequence(step_seed + [7]).generate_state(1)[0]))
                    sn.draw_gumbel_noise(model, generator)
                ctc_sum, kl_sum, utts, frames = step_losses(trained, teacher, batch, ctx, cfg, use_bf16)
                loss = ctx.world * (cfg.ctc_weight * ctc_sum / utts + cfg.kl_weight * kl_sum / frames)
                bits = sn.bits_summary(model)
                size, direction = (size_term(bits, cfg) if searching and cfg.cost != "latency"
                                   else (0.0, "off"))
                if latencies is not None:
                    latency = latency_summary(model, latencies)
                    extra, latency_direction = latency_term(latency, cfg.latency_budget, cfg.size_weight)
                    size, direction = size + extra, f"{direction}/latency-{latency_direction}"
                loss = loss + size
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                # a non-finite gradient (rare: seen once in a bf16 search on a shared CPU, not
                # reproduced) would turn every weight into NaN for good: skip that update instead.
                # After DDP's all-reduce the norm is the same on every rank, so all ranks skip.
                if torch.isfinite(norm):
                    optimizer.step()
                else:
                    optimizer.zero_grad(set_to_none=True)
                    state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                schedule.step()
                state["step"] += 1
                state["total_steps"] += 1
                state["batch_in_epoch"] += 1
                parts = ctx.all_sum([float(ctc_sum.detach()), float(kl_sum.detach())])
                if np.isfinite(parts).all():
                    window["ctc"] += parts[0] / utts
                    window["kl"] += parts[1] / frames
                    window["size"] += float(size.detach()) if torch.is_tensor(size) else size
                    window["n"] += 1
                seconds_so_far = state["phase_seconds"].get(phase, 0.0)
                state["phase_seconds"][phase] = seconds_so_far + time.time() - step_start
                bar.update(1)
                if searching:
                    bar.set_postfix(bits=f"{float(bits['expected'].detach()):.2f}/{bits['hard']:.2f}",
                                    loss=f"{parts[0] / utts + parts[1] / frames:.3f}")
                else:
                    bar.set_postfix(loss=f"{parts[0] / utts + parts[1] / frames:.3f}")
                if state["step"] % cfg.log_every == 0 or state["step"] == steps:
                    n = max(window["n"], 1)
                    record = {"phase": phase, "step": state["step"], "ctc": window["ctc"] / n,
                              "kl": window["kl"] / n, "size_term": window["size"] / n,
                              "loss": (cfg.ctc_weight * window["ctc"] + cfg.kl_weight * window["kl"]
                                       + window["size"]) / n,
                              "lr": schedule.get_last_lr()[0],
                              "sec_per_step": (time.time() - window["start"]) / n, "time": time.time(),
                              "skipped_steps": state.get("skipped_steps", 0)}
                    if searching:
                        record.update(tau=model_tau(model), expected_bits=float(bits["expected"].detach()),
                                      hard_bits=bits["hard"], size_direction=direction)
                        if latencies is not None:
                            record.update(expected_latency_ratio=float(latency["expected"].detach()),
                                          hard_latency_ratio=latency["hard"])
                    log(record)
                    window = {"ctc": 0.0, "kl": 0.0, "size": 0.0, "n": 0, "start": time.time()}
                if state["step"] % cfg.checkpoint_every == 0 and state["step"] < steps:
                    checkpoint_now()
                if state["step"] >= steps or state["total_steps"] >= stop_total:
                    break
            else:
                state["epoch"] += 1
                state["batch_in_epoch"] = 0
        bar.close()
        if state["step"] < steps:  # stopped at --stop-at-step
            checkpoint_now()
            break
        finished = time.time()
        if phase == "search":
            # the bits window is a hard budget only where bits are what the search pays for
            state["window_repairs"] = fit_window(model, cfg.window_range) if cfg.cost != "latency" else 0
            if latencies is not None:
                state["latency_ratio"] = latency_summary(model, latencies)["hard"]
            sn.finalize(model)
            state["bits"] = sn.current_bits(model)
            if cfg.method == "two-stage":
                state["stage1_bits"] = state["bits"]
        state["phase_seconds"][phase] += time.time() - finished
        log({"event": "phase-done", "phase": phase, "seconds": state["phase_seconds"][phase],
             "bits": state["bits"], "time": time.time()})
        state.update(phase=state["phase"] + 1, step=0)
        checkpoint_now()
        previous_state = model.state_dict()

    if state["phase"] < len(phases):
        log({"event": "stopped", "total_steps": state["total_steps"], "time": time.time()})
        if lock:
            lock.release()
        return {}
    if model is None:  # resumed after the last phase had finished: rebuild from the checkpoint
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        last = phases[-1][0]
        model, _ = build_student(cfg, "qat" if last == "qat" else "pass2",
                            state["stage1_bits"] if last == "qat" else state["bits"], ctx.device)
        model.load_state_dict(saved["model"])
    summary = _finish(cfg, model, state, teacher, ctx, save_quantized)
    if lock:
        lock.release()
    return summary


def _run_sensitivity(cfg, ctx, teacher, sampler, dataset, state, log, progress):
    """Two-stage kl stage 1: sensitivities on the first training batches, then the knapsack."""
    from speechmpq.train.data import collate
    from speechmpq.train.sensitivity import kl_sensitivity, knapsack

    model, resolved = build_student(cfg, "search", None, ctx.device)
    searched = [n for n, setting in resolved.items() if setting == "search"]
    sampler.epoch, sampler.start_batch = 0, 0
    batches = [collate([dataset[i] for i in indices])
               for indices, _ in zip(sampler, range(cfg.sensitivity_batches), strict=False)]
    sens = kl_sensitivity(teacher, searched, cfg.supernet.candidates, batches,
                          cfg.supernet.granularity == "per-channel", progress and ctx.main)
    sizes = {n: q.weight_numel for n, q in sn.quantizers(model).items() if n in sens}
    chosen = knapsack(sens, sizes, cfg.target_bits)
    fixed = {n: q.candidates[0] for n, q in sn.quantizers(model).items() if n not in chosen}
    state["stage1_bits"] = state["bits"] = {**fixed, **chosen}
    table = {n: {str(b): v for b, v in s.items()} for n, s in sens.items()}
    log({"event": "sensitivity", "sensitivity": table, "bits": state["bits"], "time": time.time()})


def _finish(cfg, model, state, teacher, ctx, save_quantized) -> dict:
    """Write bitplan.json, model/ and summary.json (rank 0)."""
    from speechmpq.train.models import parameter_breakdown

    model.config.apply_spec_augment = teacher.config.apply_spec_augment
    layers = sn.plan_layers(model)
    candidates = [cfg.bits] if cfg.method == "uniform" else list(cfg.supernet.candidates)
    plan = bitplan_lib.make_plan(layers, cfg.method, candidates, cfg.supernet.granularity,
                                 None if cfg.method == "uniform" else cfg.target_bits, cfg.window_range)
    total = sum(state["phase_seconds"].values())
    breakdown = parameter_breakdown(teacher)
    bias = sum(p.numel() for n, p in teacher.named_parameters() if n.endswith(".bias"))
    summary = {
        "method": cfg.method, "search": cfg.search if cfg.method == "two-stage" else None,
        "bits": cfg.bits, "target_bits": plan["target_bits"], "window": plan["window"],
        "average_bits": plan["average_bits"], "steps": cfg.steps, "pass2_steps": cfg.pass2_steps,
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
