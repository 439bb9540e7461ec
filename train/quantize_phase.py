"""One training phase of a ``speechmpq quantize`` run (search, qat or pass2) on loop.run_steps.

Each step's dropout and Gumbel draws are seeded from (seed, phase, step, rank), so a resumed phase
repeats an uninterrupted one; the loss is CTC(student) + beta * KL(teacher ‖ student), plus the
size (and latency) term while searching. A phase restores its student from the checkpoint (or,
Pass 2, from the finalized search), and a finished search is fitted into the bits window and
finalized before the phase-done checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from speechmpq.datasets import Utterance
from speechmpq.train import supernet as sn
from speechmpq.train.data import SecondsBatchSampler, SpeechDataset, collate
from speechmpq.train.loop import LoopConfig, run_steps
from speechmpq.train.quantize_config import QuantizeConfig
from speechmpq.train.quantize_step import (
    Context,
    RankSlice,
    build_optimizer,
    build_student,
    fit_bits_window,
    model_tau,
    size_term,
    step_losses,
)
from speechmpq.train.run_folder import RunLock, append_log, save_checkpoint


@dataclass(eq=False)
class QuantizeRun:
    """What every phase of one quantize run shares."""

    cfg: QuantizeConfig
    ctx: Context
    teacher: torch.nn.Module  # the FP model, frozen
    utterances: list[Utterance]
    seconds: np.ndarray  # (N,) durations of the utterances
    state: dict  # the run position and results so far (saved in every checkpoint)
    checkpoint: dict | None  # the checkpoint this process resumed from, until a phase took it
    use_bf16: bool  # bf16 autocast for the forward passes
    workers: int  # data-loading processes
    progress: bool  # progress bars and the layer table (rank 0)
    lock: RunLock | None = None  # rank 0 holds the run folder's lock

    def __post_init__(self):
        self.sampler = SecondsBatchSampler(self.seconds, self.cfg.batch_seconds, self.cfg.seed,
                                           min_size=max(self.cfg.min_batch_utterances, self.ctx.world))
        self.dataset = SpeechDataset(self.utterances)

    def log(self, record: dict) -> None:
        if self.ctx.main:
            append_log(self.cfg.out / "train_log.jsonl", record)

    def save(self, payload: dict) -> None:
        if self.ctx.main:
            save_checkpoint(self.cfg.out / "checkpoint.pt", payload)


class StepParts(NamedTuple):
    """What one step's forward leaves for the bookkeeping and the log line."""

    ctc_sum: torch.Tensor  # local sum of per-utterance CTC losses
    kl_sum: torch.Tensor  # local sum of per-frame KL(teacher ‖ student)
    utterances: float  # global count that normalises ctc_sum
    frames: float  # global count that normalises kl_sum
    size: torch.Tensor | float  # the size (and latency) term added to the loss
    direction: str  # which way the size term pushes: down, up, off (/latency-...)
    bits: dict  # sn.bits_summary of the student
    latency: dict | None  # latency_summary of the student (cost latency or both)


class PhaseHooks:
    """One phase's side of loop.run_steps: seeded student step, CTC + KL + size term, log line."""

    def __init__(self, run: QuantizeRun, phase: str, steps: int, model, optimizer, schedule,
                 latencies: dict | None, bar):
        self.run, self.phase, self.steps = run, phase, steps
        self.model, self.optimizer, self.schedule, self.bar = model, optimizer, schedule, bar
        self.sampler, self.latencies = run.sampler, latencies
        self.searching = phase == "search"
        # DDP averages the gradients over ranks; the hooks keep the plain model for the rest
        self.trained = torch.nn.parallel.DistributedDataParallel(model) if run.ctx.world > 1 else model
        self.last: StepParts | None = None
        self._reset_interval()

    def _reset_interval(self) -> None:
        self.interval = {"ctc": 0.0, "kl": 0.0, "size": 0.0, "n": 0, "start": time.time()}

    def loader(self, epoch: int):
        ctx, workers = self.run.ctx, self.run.workers
        return torch.utils.data.DataLoader(
            self.run.dataset, batch_sampler=RankSlice(self.sampler, ctx.rank, ctx.world),
            collate_fn=collate, num_workers=workers, prefetch_factor=4 if workers else None)

    def _prepare_step(self) -> None:
        """Dropout (per rank) and Gumbel noise (the same on every rank) from (seed, phase, step)."""
        cfg, state, model = self.run.cfg, self.run.state, self.model
        step_seed = [cfg.seed, state["phase"], state["step"]]
        rank_seed = int(np.random.SeedSequence(step_seed + [self.run.ctx.rank]).generate_state(1)[0])
        torch.manual_seed(rank_seed)
        np.random.seed(rank_seed)
        model.train()
        if self.searching:
            sn.set_temperature(model, sn.tau_at(state["step"], self.steps, cfg.tau_start, cfg.tau_end))
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence(step_seed + [7]).generate_state(1)[0]))
            sn.draw_gumbel_noise(model, generator)

    def forward(self, batch: dict):
        run, cfg, model = self.run, self.run.cfg, self.model
        self._prepare_step()
        ctc_sum, kl_sum, utts, frames = step_losses(self.trained, run.teacher, batch, run.ctx, cfg,
                                                    run.use_bf16)
        loss = run.ctx.world * (cfg.ctc_weight * ctc_sum / utts + cfg.kl_weight * kl_sum / frames)
        bits = sn.bits_summary(model, cfg.budget == "stored-bits")
        size, direction = (size_term(bits, cfg) if self.searching and cfg.cost != "latency"
                           else (0.0, "off"))
        latency = None
        if self.latencies is not None:
            from speechmpq.train.latency_cost import latency_summary, latency_term

            latency = latency_summary(model, self.latencies)
            extra, latency_direction = latency_term(latency, cfg.latency_budget, cfg.size_weight)
            size, direction = size + extra, f"{direction}/latency-{latency_direction}"
        return loss + size, StepParts(ctc_sum, kl_sum, utts, frames, size, direction, bits, latency)

    def count(self, batch: dict, loss, parts: StepParts, step_start: float) -> None:
        state, interval = self.run.state, self.interval
        state["total_steps"] += 1
        sums = self.run.ctx.all_sum([float(parts.ctc_sum.detach()), float(parts.kl_sum.detach())])
        if np.isfinite(sums).all():
            interval["ctc"] += sums[0] / parts.utterances
            interval["kl"] += sums[1] / parts.frames
            interval["size"] += float(parts.size.detach()) if torch.is_tensor(parts.size) else parts.size
            interval["n"] += 1
        seconds_so_far = state["phase_seconds"].get(self.phase, 0.0)
        state["phase_seconds"][self.phase] = seconds_so_far + time.time() - step_start
        step_loss = f"{sums[0] / parts.utterances + sums[1] / parts.frames:.3f}"
        if self.searching:
            self.bar.set_postfix(bits=f"{float(parts.bits['expected'].detach()):.2f}/{parts.bits['hard']:.2f}",
                                 loss=step_loss)
        else:
            self.bar.set_postfix(loss=step_loss)
        self.last = parts

    def log(self, step: int) -> None:
        cfg, interval, parts = self.run.cfg, self.interval, self.last
        n = max(interval["n"], 1)
        record = {"phase": self.phase, "step": step, "ctc": interval["ctc"] / n,
                  "kl": interval["kl"] / n, "size_term": interval["size"] / n,
                  "loss": (cfg.ctc_weight * interval["ctc"] + cfg.kl_weight * interval["kl"]
                           + interval["size"]) / n,
                  "lr": self.schedule.get_last_lr()[0],
                  "sec_per_step": (time.time() - interval["start"]) / n, "time": time.time(),
                  "skipped_steps": self.run.state.get("skipped_steps", 0)}
        if self.searching:
            record.update(tau=model_tau(self.model), expected_bits=float(parts.bits["expected"].detach()),
                          hard_bits=parts.bits["hard"], size_direction=parts.direction)
            if parts.latency is not None:
                record.update(expected_latency_ratio=float(parts.latency["expected"].detach()),
                              hard_latency_ratio=parts.latency["hard"])
        self.run.log(record)
        self._reset_interval()

    def evaluate(self, step: int) -> None:
        pass  # a phase has no dev evaluation

    def checkpoint(self) -> None:
        self.run.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                       "schedule": self.schedule.state_dict(), "state": self.run.state,
                       "config": self.run.cfg.to_dict()})


def _restore_student(run: QuantizeRun, phase: str, steps: int, previous_state: dict | None):
    """The phase's student, optimizer and schedule, as the checkpoint or the last phase left them."""
    cfg, state, checkpoint = run.cfg, run.state, run.checkpoint
    model, resolved = build_student(cfg, phase, state["stage1_bits"] if phase == "qat" else state["bits"],
                                    run.ctx.device)
    if run.ctx.main and run.progress and state["total_steps"] == 0:
        print(sn.layer_table(resolved))
    optimizer, schedule = build_optimizer(model, cfg, steps)
    if checkpoint is not None and checkpoint.get("model") is not None and state["step"] > 0:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
    elif phase == "pass2" and state["step"] == 0:  # continue from the finalized search
        model.load_state_dict(previous_state if previous_state is not None else checkpoint["model"])
    run.checkpoint = None
    return model, optimizer, schedule


def train_phase(run: QuantizeRun, phase: str, steps: int, previous_state: dict | None):
    """Run (the rest of) one training phase; returns its model once the phase is done, else None
    (stopped at --stop-at-step, after a checkpoint)."""
    from tqdm import tqdm

    cfg, state = run.cfg, run.state
    model, optimizer, schedule = _restore_student(run, phase, steps, previous_state)
    latencies = None
    if phase == "search" and cfg.cost != "bits":
        from speechmpq.train.latency_cost import layer_latencies

        latencies = layer_latencies(model, cfg.kernel_table)
    bar = tqdm(total=steps, initial=state["step"], desc=f"{cfg.method} {phase}", unit="step",
               disable=not (run.progress and run.ctx.main))
    hooks = PhaseHooks(run, phase, steps, model, optimizer, schedule, latencies, bar)
    stop = steps if cfg.stop_at_step is None else min(
        steps, state["step"] + cfg.stop_at_step - state["total_steps"])
    # The norm is all-reduced under DDP, so every rank skips the same steps (a loss is per rank).
    # A non-finite gradient (rare: seen once in a bf16 search on a shared CPU, not reproduced)
    # would turn every weight into NaN for good: that update is skipped instead.
    run_steps(LoopConfig(name="quantize", end=steps, stop=stop, grad_clip=cfg.grad_clip,
                         log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
                         log_at_stop=False, checkpoint_at_end=False, finite_loss=False), hooks, state)
    bar.close()
    if state["step"] < steps:
        return None
    finished = time.time()
    if phase == "search":
        # the bits window is a hard budget only where bits are what the search pays for
        stored = cfg.budget == "stored-bits"
        state["window_repairs"] = (fit_bits_window(model, cfg.bits_window_range, stored)
                                   if cfg.cost != "latency" else 0)
        if latencies is not None:
            from speechmpq.train.latency_cost import latency_summary

            state["latency_ratio"] = latency_summary(model, latencies)["hard"]
        sn.finalize(model)
        state["bits"] = sn.current_bits(model)
        if cfg.method == "two-stage":
            state["stage1_bits"] = state["bits"]
    state["phase_seconds"][phase] += time.time() - finished
    run.log({"event": "phase-done", "phase": phase, "seconds": state["phase_seconds"][phase],
             "bits": state["bits"], "time": time.time()})
    state.update(phase=state["phase"] + 1, step=0)
    hooks.checkpoint()
    return model
