"""Full-precision CTC training from scratch (``speechmpq train-fp``), resumable at any point.

A run folder holds ``checkpoint.pt`` (model, optimizer, schedule, data position and every RNG;
replaced atomically every ``checkpoint_every`` steps), ``train_log.jsonl`` (one JSON object per
logged step, dev evaluation, start, resume and end), ``best/`` (the Hugging Face model directory
with the lowest dev CER so far) and ``final/`` once all steps are done. Running the same command
again resumes from the checkpoint and, on the same machine and thread count, continues exactly as
an uninterrupted run would have (same batches, same dropout and masking draws). The loop itself
(resume position, non-finite guard, log and checkpoint cadence) is loop.run_steps, shared with
quantize.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechmpq.audio import SAMPLE_RATE
from speechmpq.datasets import Utterance, read_dataset
from speechmpq.train.data import SecondsBatchSampler, SpeechDataset, collate, training_utterances
from speechmpq.train.evaluate import evaluate_torch
from speechmpq.train.loop import (
    LoopConfig,
    bf16_enabled,
    check_resumable,
    load_checkpoint,
    loader_workers,
    resolve_device,
    run_steps,
    warmup_cosine,
)
from speechmpq.train.run_folder import RunLock, append_log, save_checkpoint

MAX_SKIPPED_IN_A_ROW = 20  # non-finite steps in a row before train-fp gives up

# Fields that may differ when a run is resumed; any other difference would change what the
# checkpoint means (data order, model, schedule shape), so the resume is refused.
RESUMABLE_CHANGES = ("steps", "stop_at_step", "eval_every", "checkpoint_every", "log_every",
                     "threads", "workers", "device", "extra")  # fmt: skip


@dataclass
class TrainConfig:
    train_data: Path  # LibriSpeech-style tree or manifest TSV to train on
    dev_data: Path | None  # evaluated every eval_every steps; picks best/ (None: no dev eval)
    out: Path  # run folder: checkpoint, log, best/ and final/ models
    preset: str = "demo"  # model shape (see speechmpq.train.models.PRESETS)
    model_type: str | None = None  # wav2vec2, hubert or wavlm (None: the preset's own)
    init_from: Path | None = None  # start from this model directory instead of random weights
    steps: int = 20000  # total optimizer steps (the LR schedule spans them)
    stop_at_step: int | None = None  # checkpoint and stop here (resume later); None: run to steps
    batch_seconds: float = 64.0  # padded audio seconds per batch
    max_utterance_seconds: float = 16.0  # longer training utterances are skipped
    lr: float = 1.5e-3  # peak learning rate (AdamW)
    warmup_steps: int = 500  # linear warm-up, then cosine decay to final_lr_ratio * lr
    final_lr_ratio: float = 0.05  # learning rate at the last step, relative to lr
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    grad_clip: float = 5.0  # max global gradient norm
    eval_every: int = 500  # steps between dev evaluations
    dev_utterances: int = 200  # dev subset size (first N, fixed)
    checkpoint_every: int = 100  # steps between checkpoints
    log_every: int = 20  # steps between log lines
    seed: int = 0  # weights, batch order, dropout and masking
    threads: int = 0  # torch intra-op threads (0: all cores)
    bf16: bool = True  # bf16 autocast where the device supports it
    device: str = "auto"  # auto, cpu or cuda
    workers: int = -1  # data-loading processes (-1: 1 on CPU, up to 8 on CUDA)
    # WhisperForCTC: train the top N encoder layers too (None: as the model's config says)
    trainable_encoder_layers: int | None = None
    # distillation: add kl_weight x mean per-frame KL(teacher ‖ student) to the CTC loss, the teacher a
    # frozen model directory with the same frame rate and vocabulary (e.g. the frozen-encoder model
    # whose encoder layers are now being unfrozen)
    teacher: Path | None = None
    kl_weight: float = 0.0
    extra: dict = field(default_factory=dict)  # free-form notes copied into the log

    def __post_init__(self):
        self.train_data, self.out = Path(self.train_data), Path(self.out)
        self.dev_data = Path(self.dev_data) if self.dev_data else None
        self.init_from = Path(self.init_from) if self.init_from else None
        self.teacher = Path(self.teacher) if self.teacher else None
        if self.kl_weight < 0 or (self.kl_weight > 0) != (self.teacher is not None):
            raise ValueError("distillation needs both a teacher and a positive kl_weight")
        if self.trainable_encoder_layers is not None and self.trainable_encoder_layers < 0:
            raise ValueError(f"trainable_encoder_layers must be >= 0, got {self.trainable_encoder_layers}")
        for name in ("steps", "eval_every", "checkpoint_every", "log_every", "dev_utterances"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("batch_seconds", "max_utterance_seconds", "lr", "grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.batch_seconds < self.max_utterance_seconds:
            raise ValueError("batch_seconds must be at least max_utterance_seconds")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ValueError(f"final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}")
        if self.stop_at_step is not None and not 1 <= self.stop_at_step <= self.steps:
            raise ValueError(f"stop_at_step must be in [1, steps], got {self.stop_at_step}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device}")
        if self.threads < 0 or self.workers < -1:
            raise ValueError("threads must be >= 0 and workers >= -1")

    def to_dict(self) -> dict:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**data)


def _comparable(config: dict, preset: str) -> dict:
    """A config dict with the model type resolved: "the preset's default" equals that default."""
    from speechmpq.train.models import default_model_type

    return {**config, "model_type": config.get("model_type") or default_model_type(preset)}


def _check_resumable(saved: dict, cfg: TrainConfig, ckpt_path: Path) -> None:
    current = _comparable(cfg.to_dict(), cfg.preset)
    # a field the checkpoint predates counts as unchanged
    saved = {**current, **_comparable(saved, saved["preset"])}
    check_resumable(saved, current, RESUMABLE_CHANGES, ckpt_path)


@dataclass(eq=False)
class _FPHooks:
    """train-fp's side of loop.run_steps: CTC on the batch, running loss, dev evaluation."""

    cfg: TrainConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    sampler: SecondsBatchSampler
    dataset: SpeechDataset
    dev: list[Utterance]  # the fixed dev subset (empty: no dev evaluation)
    device: torch.device
    use_bf16: bool
    workers: int  # data-loading processes
    state: dict  # the run position and totals (saved in every checkpoint)
    bar: Any  # tqdm progress bar
    teacher: torch.nn.Module | None = None  # frozen, eval mode (cfg.teacher)

    def __post_init__(self):
        self.log_path = self.cfg.out / "train_log.jsonl"
        self.last_dev: dict = {}  # the last dev evaluation's log record
        self._reset_interval()

    def _reset_interval(self) -> None:
        self.interval = {"loss": 0.0, "n": 0, "steps": 0, "start": time.time(), "audio": 0.0}

    def loader(self, epoch: int):
        # The loader's own generator (not the global RNG) seeds its workers, so starting an
        # iterator mid-epoch after a resume draws nothing from the stream dropout uses.
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=self.workers,
            prefetch_factor=4 if self.workers else None,
            generator=torch.Generator().manual_seed(self.cfg.seed * 100003 + epoch))

    def forward(self, batch: dict):
        self.model.train()
        device = self.device
        values, mask = batch["input_values"].to(device), batch["attention_mask"].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            output = self.model(values, attention_mask=mask, labels=batch["labels"].to(device))
            if self.teacher is None:
                return output.loss.float(), None
            with torch.no_grad():
                teacher_logits = self.teacher(values, attention_mask=mask).logits
        from speechmpq.train.sensitivity import frame_kl

        frames = self.model._get_feat_extract_output_lengths(mask.sum(-1))
        kl = frame_kl(teacher_logits, output.logits, frames) / frames.sum().clamp(min=1)
        return output.loss.float() + self.cfg.kl_weight * kl, None

    def count(self, batch: dict, loss, parts, step_start: float) -> None:
        audio = float(batch["attention_mask"].sum()) / SAMPLE_RATE
        self.state["audio_seconds"] += audio
        self.state["train_seconds"] += time.time() - step_start
        self.interval["steps"] += 1
        if torch.isfinite(loss):
            self.interval["loss"] += float(loss.detach())
            self.interval["n"] += 1
        self.interval["audio"] += audio

    def log(self, step: int) -> None:
        interval, state = self.interval, self.state
        elapsed = time.time() - interval["start"]
        record = {"step": step, "loss": interval["loss"] / interval["n"] if interval["n"] else math.nan,
                  "lr": self.schedule.get_last_lr()[0], "sec_per_step": elapsed / interval["steps"],
                  "skipped_steps": state.get("skipped_steps", 0),
                  "audio_sec_per_sec": interval["audio"] / elapsed,
                  "audio_hours_seen": state["audio_seconds"] / 3600,
                  "train_seconds": state["train_seconds"], "time": time.time()}
        append_log(self.log_path, record)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}")
        self._reset_interval()

    def evaluate(self, step: int) -> None:
        from speechmpq.train.models import save_model

        if not self.dev or (step % self.cfg.eval_every != 0 and step != self.cfg.steps):
            return
        scores = evaluate_torch(self.model, self.dev, progress=False)
        self.last_dev = {"step": step, "dev_wer": scores["wer"], "dev_cer": scores["cer"],
                         "example": scores["rows"][0].hypothesis, "time": time.time()}
        append_log(self.log_path, self.last_dev)
        self.bar.write(f"step {step}: dev WER {scores['wer']:.3f} CER {scores['cer']:.3f}")
        if self.state["best_dev_cer"] is None or scores["cer"] < self.state["best_dev_cer"]:
            self.state["best_dev_cer"] = scores["cer"]
            save_model(self.model, self.cfg.out / "best")

    def checkpoint(self) -> None:
        save_checkpoint(self.cfg.out / "checkpoint.pt", {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "state": self.state, "config": self.cfg.to_dict()})


def _resume(checkpoint: dict, model, optimizer, schedule, device: torch.device, state: dict) -> None:
    """Weights, optimizer, schedule, every RNG and the run position, as the checkpoint left them."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    schedule.load_state_dict(checkpoint["schedule"])
    torch.set_rng_state(checkpoint["torch_rng"].cpu())
    if checkpoint.get("numpy_rng") is not None:
        np.random.set_state(checkpoint["numpy_rng"])
    if checkpoint.get("cuda_rng") and device.type == "cuda":
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
    state.update(checkpoint["state"])


def train_fp(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train (or resume) a full-precision CTC model; returns the last dev scores."""
    from tqdm import tqdm

    # looked up now, not at import: a test wraps models.build_model
    from speechmpq.train.models import build_model, load_model, parameter_breakdown, save_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    use_bf16, workers = bf16_enabled(cfg.bf16, device), loader_workers(cfg.workers, device)
    cfg.out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(cfg.out)
    log_path, ckpt_path = cfg.out / "train_log.jsonl", cfg.out / "checkpoint.pt"
    utterances, seconds = training_utterances(cfg.train_data, cfg.max_utterance_seconds)
    dev = read_dataset(cfg.dev_data)[: cfg.dev_utterances] if cfg.dev_data else []

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # transformers draws its time masks from numpy's global RNG
    model = load_model(cfg.init_from) if cfg.init_from else build_model(
        cfg.preset, cfg.model_type, seed=cfg.seed)
    if cfg.trainable_encoder_layers is not None:
        if not hasattr(model, "set_trainable_encoder_layers"):
            raise ValueError("trainable_encoder_layers applies to models with a frozen encoder "
                             "(WhisperForCTC)")
        model.set_trainable_encoder_layers(cfg.trainable_encoder_layers)
    teacher = load_model(cfg.teacher).to(device).eval() if cfg.teacher else None
    model.to(device)
    # frozen parameters get no gradient, so AdamW leaves them (and their weight decay) alone
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                  weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup_steps, cfg.final_lr_ratio))
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_dev_cer": None,
             "train_seconds": 0.0, "audio_seconds": 0.0}
    checkpoint = load_checkpoint(ckpt_path)
    if checkpoint is not None:
        _check_resumable(dict(checkpoint["config"]), cfg, ckpt_path)
        _resume(checkpoint, model, optimizer, schedule, device, state)
        append_log(log_path, {"event": "resume", "step": state["step"], "time": time.time()})
    else:
        append_log(log_path, {"event": "start", "config": cfg.to_dict(), "device": str(device),
                              "bf16": use_bf16, "parameters": parameter_breakdown(model),
                              "train_utterances": len(utterances),
                              "train_hours": float(seconds.sum() / 3600), "time": time.time()})

    stop = min(cfg.steps, cfg.stop_at_step or cfg.steps)
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train-fp", unit="step",
               disable=not progress)
    sampler = SecondsBatchSampler(seconds, cfg.batch_seconds, cfg.seed)
    hooks = _FPHooks(cfg, model, optimizer, schedule, sampler, SpeechDataset(utterances), dev, device,
                     use_bf16, workers, state, bar, teacher)
    run_steps(LoopConfig(name="train-fp", end=cfg.steps, stop=stop, grad_clip=cfg.grad_clip,
                         log_every=cfg.log_every, checkpoint_every=cfg.checkpoint_every,
                         max_skipped_in_a_row=MAX_SKIPPED_IN_A_ROW), hooks, state)
    bar.close()
    event = "done" if state["step"] >= cfg.steps else "stopped"
    if event == "done":
        save_model(model, cfg.out / "final")
    append_log(log_path, {"event": event, "step": state["step"], "time": time.time(),
                          "train_seconds": state["train_seconds"]})
    lock.release()
    return hooks.last_dev
