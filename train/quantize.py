"""``speechmpq quantize``: one-stage mixed-precision QAT (Xu et al., ICASSP 2025) and its baselines.

A run is a list of phases (see ``QuantizeConfig.phases``), each a training loop over the same data
with loss = CTC(student) + beta * KL(FP teacher ‖ student) [+ size term while searching]:

    one-stage:        search (weights and bit choices together) [-> pass2 with bits fixed]
    uniform:          qat at --bits everywhere
    two-stage nas:    search (bits kept, weights thrown away) -> qat from FP weights
    two-stage kl:     sensitivity + knapsack                  -> qat from FP weights

The run folder holds checkpoint.pt (replaced atomically), train_log.jsonl, bitplan.json, model/
(the quantized model directory) and summary.json. Running the same command again resumes; each
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
from speechmpq.train.run_folder import RunLock, append_log, save_checkpoint
from speechmpq.train.sensitivity import frame_kl
from speechmpq.train.trainer import warmup_cosine


def lr_factor(step: int, steps: int, warmup_ratio: float) -> float:
    return warmup_cosine(step, steps, int(round(warmup_ratio * steps)), 0.05)


def size_term(summary: dict, cfg: QuantizeConfig) -> tuple[torch.Tensor | float, str]:
    """lambda * E[avg bits], added above the window, subtracted below it, 0 inside. Whether it is
    on is decided by the hard (argmax) average, the one the model will be left with."""
    low, high = cfg.window_range
    if summary["hard"] > high + 1e-9:
        return cfg.size_weight * summary["expected"], "down"
    if summary["hard"] < low - 1e-9:
        return -cfg.size_weight * summary["expected"], "up"
    return 0.0, "off"


def fit_window(model, window: list[float]) -> int:
    """After argmax, move the least confident layers one candidate down (or up) until the hard
    average lies in the window; returns how many layers were changed (usually 0)."""
    table = {n: q for n, q in sn.quantizers(model).items() if q.logits is not None}
    changes = 0
    while True:
        hard = sn.bits_summary(model)["hard"]
        direction = -1 if hard > window[1] + 1e-9 else (1 if hard < window[0] - 1e-9 else 0)
        if direction == 0 or not table:
            return changes
        options = []
        for name, q in table.items():
            index = q.chosen_index()
            if 0 <= index + direction < len(q.candidates):
                margin = float((q.logits[index] - q.logits[index + direction]).detach())
                options.append((margin, name, index + direction))
        if not options:
            return changes
        _, name, index = min(options)
        with torch.no_grad():
            table[name].logits[index] = table[name].logits.max() + 1e-3
        changes += 1
        if changes > 10 * len(table):
            raise SpeechmpqError(f"cannot fit the average bits into {window}")


class _Context:
    """Process-group facts: rank, world size, device."""

    def __init__(self, cfg: QuantizeConfig):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise SpeechmpqError("--device cuda was asked for but no CUDA device is available")
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            torch.cuda.set_device(self.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()


def _check_resumable(saved: dict, cfg: QuantizeConfig, path: Path) -> None:
    current = cfg.to_dict()
    changed = [k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k]]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} → {current[k]!r}" for k in changed)
        raise SpeechmpqError(f"{path} belongs to a run with other settings ({details}); "
                             "use a new --out folder or the original settings")


def _student(cfg: QuantizeConfig, phase: str, bits: dict | None, device):
    """The model a phase trains: FP weights + quantizers (searching or with fixed bits)."""
    from speechmpq.train.models import load_model

    model = load_model(cfg.model)
    if not cfg.spec_augment:
        model.config.apply_spec_augment = False  # restored before saving (see _finish)
        for name, parameter in model.named_parameters():
            if name.endswith("masked_spec_embed"):
                parameter.requires_grad_(False)  # unused without masking (DDP wants no strays)
    supernet_cfg = cfg.supernet
    if cfg.method == "uniform":
        supernet_cfg = sn.SupernetConfig.from_dict({**cfg.supernet.to_dict(), "candidates": [cfg.bits],
                                                   "logit_init": None})
    resolved = sn.prepare_supernet(model, supernet_cfg)
    if phase in ("qat", "pass2") and cfg.method != "uniform":
        sn.fix_bits(model, bits)
    return model.to(device), resolved


def _optimizer(model, cfg: QuantizeConfig, steps: int):
    groups = {"weights": [], "steps": [], "logits": []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key = "logits" if name.endswith(".logits") else "steps" if name.endswith(".steps") else "weights"
        groups[key].append(parameter)
    optimizer = torch.optim.AdamW([
        {"params": groups["weights"], "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": groups["steps"], "lr": cfg.lr, "weight_decay": 0.0},
        {"params": groups["logits"], "lr": cfg.logits_lr, "weight_decay": 0.0, "betas": (0.9, 0.999)},
    ], lr=cfg.lr, betas=(0.9, 0.98))  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, cfg.warmup_ratio))
    return optimizer, schedule


def _losses(student, teacher, batch, ctx: _Context, cfg: QuantizeConfig, use_bf16: bool):
    """Local sums of the CTC and KL parts and the global counts that normalise them."""
    device = ctx.device
    values = batch["input_values"].to(device)
    mask = batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        with torch.no_grad():
            teacher_logits = teacher(values, attention_mask=mask).logits
        logits = student(values, attention_mask=mask).logits
    core = student.module if hasattr(student, "module") else student
    frames = core._get_feat_extract_output_lengths(mask.sum(-1))
    target_lengths = (labels >= 0).sum(-1)
    log_probs = torch.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, B, V)
    ctc = torch.nn.functional.ctc_loss(
        log_probs, labels.clamp_min(0), frames, target_lengths, blank=core.config.pad_token_id,
        reduction="none", zero_infinity=True)
    ctc_sum = (ctc / target_lengths.clamp_min(1)).sum()  # transformers' "mean" reduction, summed
    kl_sum = frame_kl(teacher_logits, logits, frames)
    global_utts, global_frames = ctx.all_sum([float(values.shape[0]), float(frames.sum())])
    return ctc_sum, kl_sum, global_utts, global_frames


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
    ctx = _Context(cfg)
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
        model, resolved = _student(cfg, phase, state["stage1_bits"] if phase == "qat" else state["bits"],
                                   ctx.device)
        if ctx.main and progress and state["total_steps"] == 0:
            print(sn.layer_table(resolved))
        optimizer, schedule = _optimizer(model, cfg, steps)
        if checkpoint is not None and checkpoint.get("model") is not None and state["step"] > 0:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
        elif phase == "pass2" and state["step"] == 0:  # continue from the finalized search
            model.load_state_dict(previous_state if previous_state is not None else checkpoint["model"])
        checkpoint = None
        trained = torch.nn.parallel.DistributedDataParallel(model) if ctx.world > 1 else model
        searching = phase == "search"

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
                dataset, batch_sampler=_RankSlice(sampler, ctx.rank, ctx.world), collate_fn=collate,
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
                ctc_sum, kl_sum, utts, frames = _losses(trained, teacher, batch, ctx, cfg, use_bf16)
                loss = ctx.world * (ctc_sum / utts + cfg.kl_weight * kl_sum / frames)
                bits = sn.bits_summary(model)
                size, direction = (size_term(bits, cfg) if searching else (0.0, "off"))
                loss = loss + size
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                schedule.step()
                state["step"] += 1
                state["total_steps"] += 1
                state["batch_in_epoch"] += 1
                parts = ctx.all_sum([float(ctc_sum.detach()), float(kl_sum.detach())])
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
                    n = window["n"]
                    record = {"phase": phase, "step": state["step"], "ctc": window["ctc"] / n,
                              "kl": window["kl"] / n, "size_term": window["size"] / n,
                              "loss": (window["ctc"] + cfg.kl_weight * window["kl"] + window["size"]) / n,
                              "lr": schedule.get_last_lr()[0],
                              "sec_per_step": (time.time() - window["start"]) / n, "time": time.time()}
                    if searching:
                        record.update(tau=model_tau(model), expected_bits=float(bits["expected"].detach()),
                                      hard_bits=bits["hard"], size_direction=direction)
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
            state["window_repairs"] = fit_window(model, cfg.window_range)
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
        model, _ = _student(cfg, "qat" if last == "qat" else "pass2",
                            state["stage1_bits"] if last == "qat" else state["bits"], ctx.device)
        model.load_state_dict(saved["model"])
    summary = _finish(cfg, model, state, teacher, ctx, save_quantized)
    if lock:
        lock.release()
    return summary


def model_tau(model) -> float:
    table = sn.quantizers(model)
    return next((q.tau for q in table.values() if q.logits is not None), float("nan"))


class _RankSlice(torch.utils.data.Sampler):
    """This rank's share (every world-th utterance) of each global batch."""

    def __init__(self, sampler, rank: int, world: int):
        self.sampler, self.rank, self.world = sampler, rank, world

    def __iter__(self):
        for batch in self.sampler:
            yield batch[self.rank:: self.world]

    def __len__(self):
        return len(self.sampler)


def _run_sensitivity(cfg, ctx, teacher, sampler, dataset, state, log, progress):
    """Two-stage kl stage 1: sensitivities on the first training batches, then the knapsack."""
    from speechmpq.train.data import collate
    from speechmpq.train.sensitivity import kl_sensitivity, knapsack

    model, resolved = _student(cfg, "search", None, ctx.device)
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
        "window_repairs": state.get("window_repairs", 0), "device": str(ctx.device), "world": ctx.world,
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
