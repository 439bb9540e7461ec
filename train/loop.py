"""The resumable training loop that ``train-fp`` and ``quantize`` share, written once.

A trainer hands ``run_steps`` a ``LoopConfig`` (where to stop, how often to log and checkpoint, how
to treat non-finite steps) and a ``StepHooks`` object (its model, optimizer, schedule, batch sampler,
progress bar, and what differs: the loader, the forward pass, the per-step bookkeeping, the log
line, an optional evaluation and the checkpoint). One step is::

    loss = hooks.forward(batch)                 # the hook autocasts to bf16 where bf16_enabled
    zero_grad; loss.backward(); norm = clip_grad_norm_(model, grad_clip)
    finite ? optimizer.step() : skip and count  # N skipped in a row stop the run
    schedule.step(); step += 1; batch_in_epoch += 1
    hooks.count(...); log / evaluate / checkpoint when due

The run position (``state``: step, epoch, batch_in_epoch) is read back from the checkpoint, and the
sampler restarts mid-epoch, so a resumed run sees exactly the batches an uninterrupted one would.
The helpers around it (device, bf16, loader workers, the schedule, reading a checkpoint back and
refusing one made with other settings) are shared too.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from speechmpq.errors import SpeechmpqError


def warmup_cosine(step: int, steps: int, warmup_steps: int, final_ratio: float) -> float:
    """Learning-rate factor: linear warm-up over warmup_steps, then cosine decay to final_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return final_ratio + (1 - final_ratio) * cosine


def resolve_device(requested: str, index: int | None = None) -> torch.device:
    """``auto``, ``cpu`` or ``cuda`` as a device (``cuda:index`` when an index is given)."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise SpeechmpqError("--device cuda was asked for but no CUDA device is available")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda" if index is None else f"cuda:{index}")


def bf16_enabled(requested: bool, device: torch.device) -> bool:
    """Whether bf16 autocast is used: asked for, and the device has bf16 matmuls."""
    return requested and (device.type == "cuda" or torch.backends.mkldnn.is_available())


def loader_workers(requested: int, device: torch.device) -> int:
    """Data-loading processes: as asked, or (-1) 1 on CPU and up to 8 on CUDA."""
    if requested >= 0:
        return requested
    return 1 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1))


def load_checkpoint(path: Path) -> dict | None:
    """The run folder's checkpoint, on the CPU (None: a fresh run)."""
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


def check_resumable(saved: dict, current: dict, resumable: tuple[str, ...], path: Path) -> None:
    """Refuse to resume a checkpoint whose config (``saved``) differs from ``current`` (both
    ``to_dict()`` forms) in a field outside ``resumable``: the checkpoint would mean something else."""
    changed = [k for k in current if k not in resumable and saved.get(k) != current[k]]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} → {current[k]!r}" for k in changed)
        raise SpeechmpqError(f"{path} belongs to a run with other settings ({details}); "
                             "use a new --out folder or the original settings")


@dataclass
class LoopConfig:
    name: str  # the command, in the error a run of non-finite steps raises
    end: int  # the step the schedule ends at (the run's or the phase's last step)
    stop: int  # run_steps returns at this step: end, or earlier for --stop-at-step
    grad_clip: float  # max global gradient norm
    log_every: int  # steps between log lines (and one at end)
    checkpoint_every: int  # steps between checkpoints before end (and one at stop < end)
    log_at_stop: bool = True  # also log at stop < end (False: the log line waits for the resume)
    checkpoint_at_end: bool = True  # checkpoint at end too (False: the trainer does after its phase)
    # a step whose gradient norm (and, with finite_loss, loss) is not finite is skipped and counted
    # in state["skipped_steps"]; this many in a row stop the run (None: no limit)
    max_skipped_in_a_row: int | None = None
    # also skip on a non-finite loss (False under DDP: ranks see different losses but one norm)
    finite_loss: bool = True

    def __post_init__(self):
        if not 0 <= self.stop <= self.end:
            raise ValueError(f"stop must be in [0, end], got {self.stop} (end {self.end})")
        for name in ("log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_skipped_in_a_row is not None and self.max_skipped_in_a_row < 1:
            raise ValueError(f"max_skipped_in_a_row must be >= 1, got {self.max_skipped_in_a_row}")

    def log_due(self, step: int) -> bool:
        return step % self.log_every == 0 or step == self.end or (self.log_at_stop and step == self.stop)

    def checkpoint_due(self, step: int) -> bool:
        if step % self.checkpoint_every == 0 and step < self.end:
            return True
        return step == self.stop and (self.stop < self.end or self.checkpoint_at_end)


class StepHooks(Protocol):
    """The trainer's side of run_steps."""

    model: torch.nn.Module  # its parameters are clipped
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    sampler: Any  # a SecondsBatchSampler: run_steps sets its epoch and start_batch
    bar: Any  # a tqdm progress bar over the steps

    def loader(self, epoch: int):
        """The batches of one epoch (from the sampler's start_batch)."""

    def forward(self, batch: dict) -> tuple[torch.Tensor, Any]:
        """(the loss to backpropagate, whatever count and log need of this step)."""

    def count(self, batch: dict, loss: torch.Tensor, parts: Any, step_start: float) -> None:
        """Bookkeeping after the optimizer step (running sums, seconds, progress bar postfix)."""

    def log(self, step: int) -> None:
        """Write the log line for the steps since the last one."""

    def evaluate(self, step: int) -> None:
        """Called after every step's log line, before its checkpoint."""

    def checkpoint(self) -> None:
        """Save everything a resume needs."""


def _optimizer_step(cfg: LoopConfig, hooks: StepHooks, loss: torch.Tensor, state: dict) -> None:
    """Backward, clip, and the guarded update: a non-finite step changes no weight."""
    hooks.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(hooks.model.parameters(), cfg.grad_clip)
    finite = (not cfg.finite_loss or torch.isfinite(loss)) and torch.isfinite(norm)
    limit = cfg.max_skipped_in_a_row
    if finite:
        hooks.optimizer.step()
        if limit is not None:
            state["skipped_in_a_row"] = 0
    else:
        hooks.optimizer.zero_grad(set_to_none=True)
        state["skipped_steps"] = state.get("skipped_steps", 0) + 1
        if limit is not None:
            state["skipped_in_a_row"] = state.get("skipped_in_a_row", 0) + 1
            if state["skipped_in_a_row"] >= limit:
                raise SpeechmpqError(f"{cfg.name}: {limit} steps in a row had a non-finite loss or "
                                     f"gradient (step {state['step']}): lower --lr or try --no-bf16")
    hooks.schedule.step()


def run_steps(cfg: LoopConfig, hooks: StepHooks, state: dict) -> None:
    """Optimizer steps from state["step"] to cfg.stop, epoch after epoch; ``state`` (step, epoch,
    batch_in_epoch, skipped_steps...) is updated in place and saved by hooks.checkpoint()."""
    while state["step"] < cfg.stop:
        hooks.sampler.epoch, hooks.sampler.start_batch = state["epoch"], state["batch_in_epoch"]
        for batch in hooks.loader(state["epoch"]):
            step_start = time.time()
            loss, parts = hooks.forward(batch)
            _optimizer_step(cfg, hooks, loss, state)
            state["step"] += 1
            state["batch_in_epoch"] += 1
            hooks.count(batch, loss, parts, step_start)
            hooks.bar.update(1)
            step = state["step"]
            if cfg.log_due(step):
                hooks.log(step)
            hooks.evaluate(step)
            if cfg.checkpoint_due(step):
                hooks.checkpoint()
            if step >= cfg.stop:
                return
        state["epoch"] += 1
        state["batch_in_epoch"] = 0
