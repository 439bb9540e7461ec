"""Full-precision CTC training from scratch (``speechmpq train-fp``), resumable at any point.

A run folder holds ``checkpoint.pt`` (model, optimizer, schedule, data position and every RNG;
replaced atomically every ``checkpoint_every`` steps), ``train_log.jsonl`` (one JSON object per
logged step, dev evaluation, start, resume and end), ``best/`` (the Hugging Face model directory
with the lowest dev CER so far) and ``final/`` once all steps are done. Running the same command
again resumes from the checkpoint and, on the same machine and thread count, continues exactly as
an uninterrupted run would have (same batches, same dropout and masking draws).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from speechmpq.datasets import read_dataset
from speechmpq.errors import SpeechmpqError
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
    extra: dict = field(default_factory=dict)  # free-form notes copied into the log

    def __post_init__(self):
        self.train_data, self.out = Path(self.train_data), Path(self.out)
        self.dev_data = Path(self.dev_data) if self.dev_data else None
        self.init_from = Path(self.init_from) if self.init_from else None
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


def warmup_cosine(step: int, steps: int, warmup_steps: int, final_ratio: float) -> float:
    """Learning-rate factor: linear warm-up over warmup_steps, then cosine decay to final_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return final_ratio + (1 - final_ratio) * cosine


def lr_factor(step: int, cfg: TrainConfig) -> float:
    return warmup_cosine(step, cfg.steps, cfg.warmup_steps, cfg.final_lr_ratio)


def _check_resumable(saved: dict, cfg: TrainConfig, ckpt_path: Path) -> None:
    from speechmpq.train.models import default_model_type

    current = cfg.to_dict()
    # Compare the resolved model type, not "use the preset's default".
    saved["model_type"] = saved.get("model_type") or default_model_type(saved["preset"])
    current["model_type"] = current["model_type"] or default_model_type(cfg.preset)
    changed = [k for k in current if k not in RESUMABLE_CHANGES and saved.get(k, current[k]) != current[k]]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} → {current[k]!r}" for k in changed)
        raise SpeechmpqError(f"{ckpt_path} belongs to a run with other settings ({details}); "
                             "use a new --out folder or the original settings")


def _resolve_device(cfg: TrainConfig):
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise SpeechmpqError("--device cuda was asked for but no CUDA device is available")
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def train_fp(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train (or resume) a full-precision CTC model; returns the last dev scores."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from speechmpq.train.data import SecondsBatchSampler, SpeechDataset, collate, utterance_seconds
    from speechmpq.train.evaluate import evaluate_torch
    from speechmpq.train.models import build_model, load_model, parameter_breakdown, save_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = _resolve_device(cfg)
    use_bf16 = cfg.bf16 and (device.type == "cuda" or torch.backends.mkldnn.is_available())
    workers = cfg.workers if cfg.workers >= 0 else (
        1 if device.type == "cpu" else min(8, max(1, (os.cpu_count() or 2) - 1)))
    cfg.out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(cfg.out)
    log_path, ckpt_path = cfg.out / "train_log.jsonl", cfg.out / "checkpoint.pt"

    utterances = read_dataset(cfg.train_data)
    seconds = utterance_seconds(utterances)
    keep = [i for i, s in enumerate(seconds) if s <= cfg.max_utterance_seconds]
    utterances, seconds = [utterances[i] for i in keep], seconds[keep]
    dev = read_dataset(cfg.dev_data)[: cfg.dev_utterances] if cfg.dev_data else []

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)  # transformers draws its time masks from numpy's global RNG
    model = load_model(cfg.init_from) if cfg.init_from else build_model(
        cfg.preset, cfg.model_type, seed=cfg.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98),
                                  weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    sampler = SecondsBatchSampler(seconds, cfg.batch_seconds, cfg.seed)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_dev_cer": None,
             "train_seconds": 0.0, "audio_seconds": 0.0}
    if ckpt_path.exists():
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_resumable(dict(checkpoint["config"]), cfg, ckpt_path)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
        torch.set_rng_state(checkpoint["torch_rng"].cpu())
        if checkpoint.get("numpy_rng") is not None:
            np.random.set_state(checkpoint["numpy_rng"])
        if checkpoint.get("cuda_rng") and device.type == "cuda":
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        state.update(checkpoint["state"])
        append_log(log_path, {"event": "resume", "step": state["step"], "time": time.time()})
    else:
        append_log(log_path, {"event": "start", "config": cfg.to_dict(), "device": str(device),
                              "bf16": use_bf16, "parameters": parameter_breakdown(model),
                              "train_utterances": len(utterances),
                              "train_hours": float(seconds.sum() / 3600), "time": time.time()})

    def checkpoint_now():
        save_checkpoint(ckpt_path, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            "state": state, "config": cfg.to_dict()})

    stop = min(cfg.steps, cfg.stop_at_step or cfg.steps)
    dataset = SpeechDataset(utterances)
    bar = tqdm(total=cfg.steps, initial=state["step"], desc="train-fp", unit="step",
               disable=not progress)
    window = {"loss": 0.0, "n": 0, "steps": 0, "start": time.time(), "audio": 0.0}
    last_dev: dict = {}
    while state["step"] < stop:
        sampler.epoch, sampler.start_batch = state["epoch"], state["batch_in_epoch"]
        # The loader's own generator (not the global RNG) seeds its workers, so starting an
        # iterator mid-epoch after a resume draws nothing from the stream dropout uses.
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(cfg.seed * 100003 + state["epoch"]))
        for batch in loader:
            step_start = time.time()
            model.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                output = model(batch["input_values"].to(device),
                               attention_mask=batch["attention_mask"].to(device),
                               labels=batch["labels"].to(device))
            loss = output.loss.float()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if torch.isfinite(loss) and torch.isfinite(grad_norm):
                optimizer.step()
                state["skipped_in_a_row"] = 0
            else:  # a non-finite loss or gradient (seen with bf16 on the Xeon): skip the step
                optimizer.zero_grad(set_to_none=True)
                state["skipped_steps"] = state.get("skipped_steps", 0) + 1
                state["skipped_in_a_row"] = state.get("skipped_in_a_row", 0) + 1
                if state["skipped_in_a_row"] >= MAX_SKIPPED_IN_A_ROW:
                    raise SpeechmpqError(f"train-fp: {MAX_SKIPPED_IN_A_ROW} steps in a row had a non-finite "
                                         f"loss or gradient (step {state['step']}): lower --lr or try "
                                         "--no-bf16")
            schedule.step()
            state["step"] += 1
            state["batch_in_epoch"] += 1
            audio = float(batch["attention_mask"].sum()) / 16000
            state["audio_seconds"] += audio
            state["train_seconds"] += time.time() - step_start
            window["steps"] += 1
            if torch.isfinite(loss):
                window["loss"] += float(loss.detach())
                window["n"] += 1
            window["audio"] += audio
            bar.update(1)
            step = state["step"]
            if step % cfg.log_every == 0 or step == stop:
                elapsed = time.time() - window["start"]
                record = {"step": step, "loss": window["loss"] / window["n"] if window["n"] else math.nan,
                          "lr": schedule.get_last_lr()[0], "sec_per_step": elapsed / window["steps"],
                          "skipped_steps": state.get("skipped_steps", 0),
                          "audio_sec_per_sec": window["audio"] / elapsed,
                          "audio_hours_seen": state["audio_seconds"] / 3600,
                          "train_seconds": state["train_seconds"], "time": time.time()}
                append_log(log_path, record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
                window = {"loss": 0.0, "n": 0, "steps": 0, "start": time.time(), "audio": 0.0}
            if dev and (step % cfg.eval_every == 0 or step == cfg.steps):
                scores = evaluate_torch(model, dev, progress=False)
                last_dev = {"step": step, "dev_wer": scores["wer"], "dev_cer": scores["cer"],
                            "example": scores["rows"][0].hypothesis, "time": time.time()}
                append_log(log_path, last_dev)
                bar.write(f"step {step}: dev WER {scores['wer']:.3f} CER {scores['cer']:.3f}")
                if state["best_dev_cer"] is None or scores["cer"] < state["best_dev_cer"]:
                    state["best_dev_cer"] = scores["cer"]
                    save_model(model, cfg.out / "best")
            if step % cfg.checkpoint_every == 0 or step == stop:
                checkpoint_now()
            if step >= stop:
                break
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    bar.close()
    if state["step"] >= cfg.steps:
        save_model(model, cfg.out / "final")
        append_log(log_path, {"event": "done", "step": state["step"], "time": time.time(),
                              "train_seconds": state["train_seconds"]})
    else:
        append_log(log_path, {"event": "stopped", "step": state["step"], "time": time.time(),
                              "train_seconds": state["train_seconds"]})
    lock.release()
    return last_dev
