"""The bit plan's per-group granularity: validation, format versions, stored bits per weight."""

import copy
import re
from pathlib import Path

import pytest

from speechmpq import bitplan

DEMO_PLAN = Path(__file__).resolve().parents[2] / "models" / "demo-mpq" / "bitplan.json"


def _layers(group_size=32):
    return {
        "a.q_proj": {"bits": 2, "kind": "linear", "shape": [64, 128],
                     "scale_shape": [64, 128 // group_size]},
        "a.output_dense": {"bits": 8, "kind": "linear", "shape": [32, 64],
                           "scale_shape": [32, 64 // group_size]},
    }


def _plan(group_size=32):
    return bitplan.make_plan(_layers(group_size), "one-stage", [2, 4, 8], "per-group", 4.0, [3.5, 4.0],
                             group_size=group_size)


def test_a_per_group_plan_is_format_version_2_and_round_trips():
    plan = _plan()
    assert plan["format_version"] == 2 and plan["group_size"] == 32
    assert bitplan.loads(bitplan.dumps(plan)) == plan


def test_per_tensor_and_per_channel_plans_stay_version_1_byte_for_byte():
    text = DEMO_PLAN.read_text()
    plan = bitplan.loads(text)
    assert plan["format_version"] == 1 and "group_size" not in plan
    assert bitplan.dumps(plan) == text
    rebuilt = bitplan.make_plan(plan["layers"], plan["method"], plan["candidates"], plan["granularity"],
                                plan["target_bits"], plan["window"])
    assert bitplan.dumps(rebuilt) == text


def _broken(change):
    plan = copy.deepcopy(_plan())
    change(plan)
    plan["average_bits"] = round(bitplan.average_bits(plan["layers"]), 6)  # only the change is wrong
    return plan


@pytest.mark.parametrize("change, message", [
    (lambda p: p.update(format_version=1), "needs format_version 2"),
    (lambda p: p.update(format_version=4), "newer"),
    (lambda p: p.pop("group_size"), "group_size must be a power of two"),
    (lambda p: p.update(group_size=48), "group_size must be a power of two"),
    (lambda p: p.update(group_size=8), "group_size must be a power of two"),
    (lambda p: p.update(group_size=True), "group_size must be a power of two"),
    (lambda p: p["layers"]["a.q_proj"].update(scale_shape=[64, 1]), "scale_shape must be [64, 4]"),
    (lambda p: p["layers"]["a.q_proj"].update(scale_shape=[64, 128]), "scale_shape must be [64, 4]"),
    (lambda p: p["layers"]["a.q_proj"].update(shape=[64, 80], scale_shape=[64, 2]), "multiple of group_size"),
    (lambda p: p["layers"]["a.q_proj"].update(shape=[64, 128, 1], scale_shape=[64, 4, 1]), "2-D shape"),
    (lambda p: p["layers"]["a.q_proj"].update(kind="conv1d"), "linear layers only"),
])
def test_bad_per_group_plans_are_rejected_naming_the_problem(change, message):
    with pytest.raises(bitplan.BitPlanError, match=re.escape(message)):
        bitplan.validate(_broken(change))


def test_group_size_belongs_to_per_group_plans_only():
    layers = {"a.q_proj": {"bits": 4, "kind": "linear", "shape": [8, 32], "scale_shape": [8, 1]}}
    plan = bitplan.make_plan(layers, "uniform", [4], "per-channel")
    assert plan["format_version"] == 1
    with pytest.raises(bitplan.BitPlanError, match="per-group plans only"):
        bitplan.validate({**plan, "group_size": 32})
    with pytest.raises(bitplan.BitPlanError, match="per-group plans only"):
        bitplan.make_plan(layers, "uniform", [4], "per-channel", group_size=32)
    # a reader accepts version 2 for any granularity
    assert bitplan.validate({**plan, "format_version": 2})["format_version"] == 2


def test_stored_bits_per_weight_counts_codes_plus_float32_scales():
    # 64 x 128 at 2 bits (8192 weights) and 32 x 64 at 8 bits (2048 weights), both searched.
    codes = 2 * 8192 + 8 * 2048
    per_group = (codes + 32 * (64 * 4 + 32 * 2)) / 10240  # group 32: + 32/32 = 1 bit per weight
    assert bitplan.stored_bits_per_weight(_plan(32)) == pytest.approx(per_group)
    assert per_group == pytest.approx(codes / 10240 + 1.0)
    assert bitplan.stored_bits_per_weight(_plan(64)) == pytest.approx(codes / 10240 + 0.5)
    layers = _layers()
    channel = {n: {**e, "scale_shape": [e["shape"][0], 1]} for n, e in layers.items()}
    tensor = {n: {**e, "scale_shape": [1, 1]} for n, e in layers.items()}
    channel_plan = bitplan.make_plan(channel, "one-stage", [2, 4, 8], "per-channel")
    tensor_plan = bitplan.make_plan(tensor, "one-stage", [2, 4, 8], "per-tensor")
    # per channel: 32 / in per weight -> (64 + 32) scales; per tensor: one scale per layer
    assert bitplan.stored_bits_per_weight(channel_plan) == pytest.approx((codes + 32 * (64 + 32)) / 10240)
    assert bitplan.stored_bits_per_weight(tensor_plan) == pytest.approx((codes + 32 * 2) / 10240)
    # the paper's average_bits counts codes only, whatever the granularity
    assert _plan()["average_bits"] == channel_plan["average_bits"] == pytest.approx(codes / 10240)
    # unsearched layers are left out unless asked for
    layers["a.output_dense"]["searched"] = False
    plan = bitplan.make_plan(layers, "one-stage", [2, 4, 8], "per-group", group_size=32)
    assert bitplan.stored_bits_per_weight(plan) == pytest.approx(3.0)
    assert bitplan.stored_bits_per_weight(plan, searched_only=False) == pytest.approx(per_group)

