"""Settings of one ``speechmpq quantize`` run (one-stage, uniform or two-stage)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from speechmpq.train.supernet import SupernetConfig

METHODS = ("one-stage", "uniform", "two-stage")
SEARCHES = ("nas", "kl")
COSTS = ("bits", "latency", "both")
BUDGETS = ("code-bits", "stored-bits")

# Fields that may change when a run is resumed (they do not change what the checkpoint means).
RESUMABLE_CHANGES = ("stop_at_step", "checkpoint_every", "log_every", "threads", "workers", "device",
                     "pass2_steps", "out")  # a finished search can be continued with a Pass 2
# Fields whose key in to_dict() (saved in checkpoints and logs) is not the field name.
_FILE_KEYS = {"bits_window": "window"}


@dataclass
class QuantizeConfig:
    model: Path  # full-precision model directory (teacher and starting point)
    train_data: Path  # LibriSpeech-style tree or manifest TSV
    out: Path  # run folder: checkpoint, log, bitplan.json, model/ (the quantized model)
    method: str = "one-stage"  # one-stage (paper), uniform or two-stage
    bits: int | None = None  # uniform: the bit width of every searched layer
    target_bits: float = 3.5  # one-/two-stage: average-bits budget over searched layers
    bits_window: float = 0.2  # size term off inside [target_bits - bits_window, target_bits]
    search: str = "nas"  # two-stage stage 1: nas (Gumbel search, weights discarded) or kl
    supernet: SupernetConfig = field(default_factory=SupernetConfig)  # what and how to quantize
    steps: int = 500  # optimizer steps of each training stage
    pass2_steps: int = 0  # one-stage: fine-tune steps with bits fixed after the search (0: none)
    stop_at_step: int | None = None  # checkpoint and stop after this many steps in all (resume later)
    batch_seconds: float = 32.0  # padded audio seconds per global batch
    max_utterance_seconds: float = 16.0  # longer training utterances are skipped
    min_batch_utterances: int = 1  # global batches with fewer utterances are skipped (raised to
    #                                the number of processes under torchrun, so none gets nothing)
    lr: float = 2e-4  # peak learning rate for weights and step sizes (AdamW)
    logits_lr: float = 1e-2  # learning rate of the bit-choice logits (Adam, no weight decay)
    warmup_ratio: float = 0.1  # linear warm-up share of each stage, then cosine decay
    weight_decay: float = 0.0  # on weights only
    grad_clip: float = 5.0  # max global gradient norm
    kl_weight: float = 1.0  # beta: weight of KL(FP teacher ‖ quantized student), per frame
    ctc_weight: float = 1.0  # weight of the CTC loss on the transcripts (0: distil from the teacher only)
    size_weight: float = 1.0  # lambda: weight of the size term (in average bits)
    # what the size term pays for: "bits" (the paper: average bits against the target window),
    # "latency" (expected latency of the searched layers from a kernel table, over their fp32
    # latency, against latency_budget; train/latency_cost.py) or "both" (the two terms added).
    # "bits" is the default: on a CPU where every candidate runs in one kernel (this one, see
    # results/kernels_*.md) the latency term is flat and cannot choose.
    cost: str = "bits"
    kernel_table: Path | None = None  # speechmpq kernels JSON for the model's shapes (latency, both)
    latency_budget: float = 0.7  # hard latency ratio of the searched layers to fp32 above which it pushes
    tau_start: float = 0.5  # Gumbel-softmax temperature at the first step
    tau_end: float = 0.01  # ... and at the last step of the search (cosine annealed)
    sensitivity_batches: int = 4  # two-stage kl: training batches used to measure sensitivity
    spec_augment: bool = False  # keep the model's time masking during QAT (teacher sees no mask)
    seed: int = 0  # batch order, dropout, Gumbel noise
    threads: int = 0  # torch intra-op threads (0: all cores)
    bf16: bool = True  # bf16 autocast for the matmuls where the device supports it
    device: str = "auto"  # auto, cpu or cuda
    workers: int = -1  # data-loading processes (-1: 1 on CPU, up to 8 on CUDA)
    checkpoint_every: int = 50  # steps between checkpoints
    log_every: int = 10  # steps between log lines
    # (kept last: checkpoints list fields in order) what target_bits and the window count:
    # "code-bits" (the paper: the codes alone) or "stored-bits"
    # (codes plus each weight's share of its float32 scales: bitplan.stored_bits_per_weight, the size
    # every frontier table uses; per group of G that is 32 / G more, per channel 32 / in)
    budget: str = "code-bits"
    # peak learning rate of the step sizes (None: lr, as for the weights); e.g. lr 2e-6 with step_lr
    # 2e-4 learns the steps (and so the rounding) with the weights nearly frozen
    step_lr: float | None = None

    def __post_init__(self):
        self.model, self.train_data, self.out = Path(self.model), Path(self.train_data), Path(self.out)
        if isinstance(self.supernet, dict):
            self.supernet = SupernetConfig.from_dict(self.supernet)
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {self.cost!r}")
        if self.cost != "bits":
            if self.kernel_table is None:
                raise ValueError(
                    f"--cost {self.cost} needs --kernel-table (write one with speechmpq kernels)"
                )
            self.kernel_table = Path(self.kernel_table)
            if self.method == "uniform":
                raise ValueError("--cost applies to searches; uniform has nothing to choose")
        if not 0 < self.latency_budget <= 4:
            raise ValueError(f"latency_budget must be in (0, 4], got {self.latency_budget}")
        if self.search not in SEARCHES:
            raise ValueError(f"search must be one of {SEARCHES}, got {self.search!r}")
        low, high = min(self.supernet.candidates), max(self.supernet.candidates)
        if self.method == "uniform":
            if self.bits is None or not 2 <= self.bits <= 8:
                raise ValueError(f"--method uniform needs --bits in 2..8, got {self.bits}")
        elif self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}")
        elif self.budget == "stored-bits" and self.method == "two-stage" and self.search == "kl":
            raise ValueError("two-stage kl's knapsack counts code bits: use --budget code-bits")
        if self.supernet.group_sizes is not None and self.method == "two-stage" and self.search == "kl":
            raise ValueError("two-stage kl measures one group size per layer: no --group-sizes")
        elif not low <= self.target_bits <= high + (32.0 if self.budget == "stored-bits" else 0.0):
            raise ValueError(f"target_bits {self.target_bits} is outside the candidates' range "
                             f"{low}..{high}")
        if not 0 <= self.bits_window < high - low + 1e-9 and self.method != "uniform":
            raise ValueError(f"window must be in [0, {high - low}], got {self.bits_window}")
        for name in ("steps", "checkpoint_every", "log_every", "sensitivity_batches",
                     "min_batch_utterances"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.pass2_steps < 0:
            raise ValueError(f"pass2_steps must be >= 0, got {self.pass2_steps}")
        for name in ("batch_seconds", "max_utterance_seconds", "lr", "logits_lr", "grad_clip",
                     "tau_start", "tau_end"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.step_lr is not None and not self.step_lr > 0:
            raise ValueError(f"step_lr must be positive, got {self.step_lr}")
        for name in ("kl_weight", "ctc_weight", "size_weight", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.kl_weight == 0 and self.ctc_weight == 0:
            raise ValueError("kl_weight and ctc_weight are both 0: nothing to train on")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.batch_seconds < self.max_utterance_seconds:
            raise ValueError("batch_seconds must be at least max_utterance_seconds")
        if self.stop_at_step is not None and self.stop_at_step < 1:
            raise ValueError(f"stop_at_step must be >= 1, got {self.stop_at_step}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device}")
        if self.threads < 0 or self.workers < -1:
            raise ValueError("threads must be >= 0 and workers >= -1")

    @property
    def bits_window_range(self) -> list[float] | None:
        """[low, high] average bits inside which the size term is off (the bit plan's "window")."""
        if self.method == "uniform":
            return None
        return [round(self.target_bits - self.bits_window, 6), self.target_bits]

    def phases(self) -> list[tuple[str, int]]:
        """(phase, steps) in order. search: Gumbel supernet; qat: bits fixed, from FP weights;
        pass2: bits fixed, continuing from the search; sensitivity: the kl stage 1 (no steps)."""
        if self.method == "uniform":
            return [("qat", self.steps)]
        if self.method == "one-stage":
            return [("search", self.steps)] + ([("pass2", self.pass2_steps)] if self.pass2_steps else [])
        first = ("search", self.steps) if self.search == "nas" else ("sensitivity", 0)
        return [first, ("qat", self.steps)]

    def to_dict(self) -> dict:
        """Plain values; bits_window under its file key "window" (checkpoints and logs keep it)."""
        data = {_FILE_KEYS.get(k, k): (str(v) if isinstance(v, Path) else v)
                for k, v in asdict(self).items()}
        data["supernet"] = self.supernet.to_dict()
        if self.budget == "code-bits":  # runs from before the stored-bits budget compare equal on resume
            del data["budget"]
        if self.step_lr is None:
            del data["step_lr"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> QuantizeConfig:
        """The inverse of to_dict (field names are accepted too)."""
        names = {key: field_name for field_name, key in _FILE_KEYS.items()}
        data = {names.get(k, k): v for k, v in data.items()}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown QuantizeConfig fields: {sorted(unknown)}")
        return cls(**data)
