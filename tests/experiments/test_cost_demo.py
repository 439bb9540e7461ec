"""cost_compare's predicted latency: the kernel table's time of the kernels export chose, over fp32."""

import pytest
from cost_demo import cost_systems, predicted_ratio


def test_predicted_ratio_sums_the_chosen_kernels_of_searched_layers():
    table = {"linear": [
        {"k": 4, "n": 8, "kernels": [{"kernel": "fp32", "median_ms": 2.0},
                                     {"kernel": "int8-dynamic-from2", "median_ms": 1.0},
                                     {"kernel": "nbits8-block32", "median_ms": 3.0}]},
        {"k": 8, "n": 4, "kernels": [{"kernel": "fp32", "median_ms": 4.0},
                                     {"kernel": "nbits4-block32", "median_ms": 2.0}]},
    ]}
    plan = {"layers": {"a": {"shape": [8, 4]}, "b": {"shape": [4, 8]}, "c": {"shape": [8, 4]},
                       "conv": {"shape": [8, 4, 3]}}}
    records = [{"layer": "a", "kernel": "int8-dynamic-from2", "searched": True},
               {"layer": "b", "kernel": "nbits4-block32", "searched": True},
               {"layer": "c", "kernel": "nbits8-block32", "searched": False},  # not searched: left out
               {"layer": "conv", "kernel": "conv-qdq", "searched": True}]  # not a linear: left out
    assert predicted_ratio(records, plan, table) == pytest.approx((1.0 + 2.0) / (2.0 + 4.0))


def test_the_three_costs_share_steps_and_differ_only_in_what_they_pay_for():
    systems = {s.name: s.args for s in cost_systems("t.json", 3.0, 0.7, 40)}
    assert systems["fp32"] == []
    for name in ("cost-bits", "cost-latency", "cost-both"):
        assert systems[name][:4] == ["--method", "one-stage", "--pass2-steps", "40"]
    assert "--kernel-table" not in systems["cost-bits"] and "--target-bits" not in systems["cost-latency"]
    assert {"--kernel-table", "--target-bits"} <= set(systems["cost-both"])
