"""What to export (``Source``), and reading it once: a model directory (float or quantized) or a
preset shape, with the bit plan it carries or is given."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechmpq import bitplan as bitplan_lib
from speechmpq.errors import SpeechmpqError
from speechmpq.export.config import PEERS
from speechmpq.export.qdq import QuantizedWeight


@dataclass
class Source:
    """What to export: a model directory, or a preset shape with random weights."""

    model_dir: Path | None = None
    preset: str | None = None
    model_type: str | None = None
    seed: int = 0
    plan: Path | None = None  # apply this bit plan (round to nearest) to a float model
    plan_pattern: Path | None = None  # repeat this plan's per-matrix-type bits over the model's layers
    peer: str | None = None  # one of PEERS, applied to the FP32 graph

    def __post_init__(self):
        if (self.model_dir is None) == (self.preset is None):
            raise SpeechmpqError("give a model directory or a preset, not both or neither")
        if self.plan is not None and self.plan_pattern is not None:
            raise SpeechmpqError("--plan and --plan-pattern exclude each other")
        if self.peer is not None and self.peer not in PEERS:
            raise SpeechmpqError(f"unknown peer {self.peer!r}; choose from {PEERS}")


@dataclass
class LoadedSource:
    """A ``Source`` read: the model to trace and the integer weights to put in its graph."""

    model: Any  # float PyTorch CTC model, eval mode; each planned weight is already codes x scale
    vocab: list[str]  # tokens in id order
    do_normalize: bool  # the model expects zero-mean unit-variance input
    weights: list[QuantizedWeight]  # the plan's weights; [] for an FP32 export
    plan: dict | None  # the bit plan; None for an FP32 export


def load_source(source: Source) -> LoadedSource:
    """Read ``source``: a quantized directory (one with bitplan.json) through ``read_quantized``,
    once; a float directory or preset, with ``source.plan`` or ``source.plan_pattern`` applied by
    round to nearest."""
    from speechmpq.train.models import build_model, feature_settings, load_model, model_vocab
    from speechmpq.train.qmodel import read_quantized

    if source.model_dir is None:
        model = build_model(source.preset, source.model_type, seed=source.seed).eval()
        return _with_given_plan(source, model, model_vocab(None), True)
    model_dir = Path(source.model_dir)
    quantized = read_quantized(model_dir) if (model_dir / "bitplan.json").is_file() else None
    model = load_model(model_dir) if quantized is None else quantized.model
    vocab, do_normalize = model_vocab(model_dir), feature_settings(model_dir)["do_normalize"]
    if quantized is None:
        return _with_given_plan(source, model, vocab, do_normalize)
    if source.plan or source.plan_pattern or source.peer:
        raise SpeechmpqError(f"{source.model_dir} is already quantized; --plan, --plan-pattern "
                             f"and --peer need a float model")
    weights = [QuantizedWeight(name, entry["bits"], quantized.codes[name], quantized.scales[name],
                               entry["kind"], entry.get("searched", True),
                               bitplan_lib.layer_group_size(quantized.plan, entry))
               for name, entry in quantized.plan["layers"].items()]
    return LoadedSource(model, vocab, do_normalize, weights, quantized.plan)


def _with_given_plan(source: Source, model, vocab: list[str], do_normalize: bool) -> LoadedSource:
    """A float model as is, or with the plan of ``source.plan`` / ``source.plan_pattern`` applied."""
    from speechmpq.export.plans import pattern_plan, rtn_weights

    if source.plan is None and source.plan_pattern is None:
        return LoadedSource(model, vocab, do_normalize, [], None)
    try:
        given = bitplan_lib.load(source.plan or source.plan_pattern)
    except bitplan_lib.BitPlanError as error:
        raise SpeechmpqError(str(error)) from None
    plan = given if source.plan is not None else pattern_plan(model, given)
    return LoadedSource(model, vocab, do_normalize, rtn_weights(model, plan), plan)
