"""experiments/lm_demo.py states the dev/test protocol: which sets chose, which judge."""

import json
from pathlib import Path

import pytest
from lm_demo import main, markdown, protocol

COMMITTED = Path(__file__).resolve().parents[2] / "results" / "lm_demo_pc4.json"


def test_a_test_verdict_must_say_what_chose_its_settings(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--fp32", "a.onnx", "--mpq", "b.onnx", "--lm", "lm.arpa", "--sets", "x=y", "--role", "test",
              "--out", "/tmp/unused"])
    assert exit_info.value.code == 2
    assert "--chosen-on" in capsys.readouterr().err


@pytest.mark.parametrize(("role", "chosen_on", "says"), [
    ("dev", None, "choose settings"),
    ("test", "results/frontier_dev.json", "Settings chosen on: results/frontier_dev.json"),
    (None, None, "before the dev/test protocol"),
])
def test_the_report_names_the_role_of_its_sets(role, chosen_on, says):
    report = json.loads(COMMITTED.read_text())  # made before the protocol: no "protocol" key
    if role is not None:
        report["protocol"] = protocol(role, chosen_on)
    assert says in markdown(report)
