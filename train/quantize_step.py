"""The parts of one quantization-aware training step, shared by ``quantize_model`` and the step-time
benchmark (experiments/supernet_step_time.py): the process group, the student a phase trains, its
optimizer, the loss parts (CTC + KL, normalised by global counts), the size term and the bits-window
fit after the search.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from speechmpq.errors import SpeechmpqError
from speechmpq.train import supernet as sn
from speechmpq.train.loop import resolve_device, warmup_cosine
from speechmpq.train.quantize_config import QuantizeConfig
from speechmpq.train.sensitivity import frame_kl

FINAL_LR_RATIO = 0.05  # learning rate at the last step of a phase, relative to its peak


def size_term(summary: dict, cfg: QuantizeConfig) -> tuple[torch.Tensor | float, str]:
    """lambda * E[avg bits], added above the bits window, subtracted below it, 0 inside. Whether it
    is on is decided by the hard (argmax) average, the one the model will be left with."""
    low, high = cfg.bits_window_range
    if summary["hard"] > high + 1e-9:
        return cfg.size_weight * summary["expected"], "down"
    if summary["hard"] < low - 1e-9:
        return -cfg.size_weight * summary["expected"], "up"
    return 0.0, "off"


def fit_bits_window(model, bits_window: list[float], stored: bool = False) -> int:
    """After argmax, move the least confident layers one candidate down (or up) until the hard
    average (``stored``: stored bits per weight) lies in bits_window ([low, high]); returns how many
    layers were changed (usually 0)."""
    table = {n: q for n, q in sn.quantizers(model).items() if q.logits is not None}
    changes = 0
    while True:
        hard = sn.bits_summary(model, stored)["hard"]
        direction = -1 if hard > bits_window[1] + 1e-9 else (1 if hard < bits_window[0] - 1e-9 else 0)
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
            raise SpeechmpqError(f"cannot fit the average bits into {bits_window}")


class Context:
    """Process-group facts: rank, world size, device."""

    def __init__(self, cfg: QuantizeConfig):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        use_cuda = self.device.type == "cuda"
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


def build_student(cfg: QuantizeConfig, phase: str, bits: dict | None, device):
    """The model a phase trains: FP weights + quantizers (searching or with fixed bits)."""
    from speechmpq.train.models import load_model

    model = load_model(cfg.model)
    if hasattr(model, "set_trainable_encoder_layers"):  # WhisperForCTC: every searched layer learns
        model.set_trainable_encoder_layers(model.config.encoder_layers)  # (restored on save)
    if not cfg.spec_augment:
        model.config.apply_spec_augment = False  # restored before saving (quantize._finish)
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


def build_optimizer(model, cfg: QuantizeConfig, steps: int):
    groups = {"weights": [], "steps": [], "logits": []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key = "logits" if name.endswith(".logits") else "steps" if name.endswith(".steps") else "weights"
        groups[key].append(parameter)
    optimizer = torch.optim.AdamW([
        {"params": groups["weights"], "lr": cfg.lr, "weight_decay": cfg.weight_decay},
        {"params": groups["steps"], "lr": cfg.step_lr or cfg.lr, "weight_decay": 0.0},
        {"params": groups["logits"], "lr": cfg.logits_lr, "weight_decay": 0.0, "betas": (0.9, 0.999)},
    ], lr=cfg.lr, betas=(0.9, 0.98))  # fmt: skip
    warmup_steps = int(round(cfg.warmup_ratio * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, steps, warmup_steps, FINAL_LR_RATIO))
    return optimizer, schedule


def step_losses(student, teacher, batch, ctx: Context, cfg: QuantizeConfig, use_bf16: bool):
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


def model_tau(model) -> float:
    table = sn.quantizers(model)
    return next((q.tau for q in table.values() if q.logits is not None), float("nan"))


class RankSlice(torch.utils.data.Sampler):
    """This rank's share (every world-th utterance) of each global batch."""

    def __init__(self, sampler, rank: int, world: int):
        self.sampler, self.rank, self.world = sampler, rank, world

    def __iter__(self):
        for batch in self.sampler:
            yield batch[self.rank:: self.world]

    def __len__(self):
        return len(self.sampler)
