"""A writer to be killed: ``python killed_writer.py KIND TARGET MARKER WHEN``.

Writes one of speechmpq's outputs (KIND) over TARGET. WHEN=rename: every rename is replaced by
"touch MARKER, then sleep", so the process is stopped with the new output complete but not yet in
place (the last moment before the target changes); the test then kills it with SIGKILL.
WHEN=free: no pause (the test kills it at a random moment while the temporary file grows).
KIND=naive is the control: a plain torch.save onto the target, which a kill does tear.
"""

import os
import sys
import time
from pathlib import Path


def _pause(*_args, **_kwargs):
    Path(sys.argv[3]).write_text("paused\n")
    time.sleep(120)
    raise SystemExit("not killed")


def _onnx_model(values):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.asarray(values, np.float32), "weight")
    graph = helper.make_graph([helper.make_node("Add", ["x", "weight"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [len(values)])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [len(values)])],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write(kind: str, target: Path, size: int) -> None:
    if kind == "text":  # bit plans, summaries, JSON and Markdown reports
        from speechmpq.files import atomic_write

        atomic_write(target, "new line\n" * size)
    elif kind == "checkpoint":
        import torch

        from speechmpq.train.run_folder import save_checkpoint

        save_checkpoint(target, {"step": 2, "weights": torch.full((size,), 2.0)})
    elif kind == "naive":
        import torch

        torch.save({"step": 2, "weights": torch.full((size,), 2.0)}, target)
    elif kind in ("onnx", "onnx-external"):
        from speechmpq.export.save import save_checked

        save_checked(_onnx_model([2.0] * size), target, 0 if kind == "onnx-external" else 1 << 30)
    elif kind == "plot":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from speechmpq.files import atomic_output

        figure, axis = plt.subplots()
        axis.plot(range(size))
        with atomic_output(target) as tmp:
            figure.savefig(tmp, format="png")
    elif kind == "model-dir":
        from speechmpq.train.models import build_model, save_model

        save_model(build_model("tiny", seed=size), target)
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    kind, target, _marker, when = sys.argv[1:5]
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    if when == "rename":
        import speechmpq.files

        os.replace = os.rename = _pause
        speechmpq.files._exchange = _pause
    write(kind, Path(target), size)
