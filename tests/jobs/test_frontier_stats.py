"""The figures that show whether a search searched: round to nearest of a model's own plan reads as
RTN (no code differs, no step moved); moved steps and changed codes are counted."""

import numpy as np
import pytest

from speechmpq import bitplan
from speechmpq.export.plans import rtn_weights
from speechmpq.jobs.frontier_stats import search_stats, uniform_plan
from speechmpq.train.models import build_model, load_model, save_model
from speechmpq.train.qmodel import save_quantized
from speechmpq.train.supernet import SupernetConfig, finalize, plan_layers, prepare_supernet


@pytest.fixture(scope="module")
def fp32_dir(tmp_path_factory):
    return save_model(build_model("tiny", seed=2), tmp_path_factory.mktemp("fs") / "fp")


@pytest.mark.parametrize("granularity, group_size", [("per-channel", None), ("per-group", 16),
                                                     ("per-tensor", None)])
def test_uniform_plans_cover_the_searched_layers(fp32_dir, granularity, group_size):
    plan = uniform_plan(fp32_dir, 2, granularity, group_size)
    assert len(plan["layers"]) == 12 and plan["average_bits"] == 2
    extra = {"per-channel": None, "per-group": 32 / 16, "per-tensor": None}[granularity]
    if extra is not None:
        assert bitplan.stored_bits_per_weight(plan) == pytest.approx(2 + extra)


def _quantized(fp32_dir, path, bits, nudge=None):
    model = load_model(fp32_dir).eval()
    prepare_supernet(model, SupernetConfig(candidates=(bits,), granularity="per-channel"))
    if nudge:
        nudge(model)
    finalize(model)
    plan = bitplan.make_plan(plan_layers(model), "uniform", [bits], "per-channel")
    return save_quantized(model, plan, path, source_dir=fp32_dir)


def test_round_to_nearest_of_the_plan_reads_as_rtn(fp32_dir, tmp_path):
    stats = search_stats(fp32_dir, _quantized(fp32_dir, tmp_path / "q", 4))
    assert stats["codes_differ_from_rtn"] == 0 and stats["step_movement"]["max"] < 1e-6
    assert stats["equals_rtn"] and stats["bit_histogram"] == {"4": 1.0}
    assert stats["layers_at_bits"] == {"4": 12}


def test_moved_steps_and_codes_are_counted(fp32_dir, tmp_path):
    import torch

    from speechmpq.train.supernet import quantizers

    def nudge(model):
        with torch.no_grad():
            for quantizer in quantizers(model).values():
                quantizer.steps.mul_(1.3)

    stats = search_stats(fp32_dir, _quantized(fp32_dir, tmp_path / "q", 4, nudge))
    assert stats["step_movement"]["median"] == pytest.approx(0.3, rel=1e-3)
    assert stats["codes_differ_from_rtn"] > 0.05 and not stats["equals_rtn"]


def test_export_rtn_matches_the_stats_reference(fp32_dir):
    """The frontier's RTN rows (export --plan) use the same MSE steps the stats compare with."""
    model = load_model(fp32_dir)
    plan = uniform_plan(fp32_dir, 3, "per-channel")
    weights = {w.name: w for w in rtn_weights(model, plan)}
    from speechmpq.train.quant import mse_step_size

    fp32 = dict(load_model(fp32_dir).named_modules())
    for name, weight in weights.items():
        step = mse_step_size(fp32[name].weight.detach().float(), 3, True).numpy()
        np.testing.assert_array_equal(weight.scale, step.astype(np.float32))
