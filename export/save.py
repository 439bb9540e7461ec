"""Write an ONNX model atomically, checked, with external data when it is too big for one protobuf."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import onnx

from speechmpq.errors import SpeechmpqError
from speechmpq.files import remove_stale_temporaries, temporary_name


def save_checked(model: onnx.ModelProto, out: Path, external_data_threshold: int) -> list[Path]:
    """Save ``model`` to ``out`` (plus ``out.data`` above the threshold); returns the files written.

    Everything is written into a staging folder beside ``out`` and checked there with
    ``onnx.checker.check_model(full_check=True)``; only then is it renamed into place (the data file
    first), so a failure or a kill never leaves a half-written model under the final name.
    """
    out = Path(out)
    if out.suffix != ".onnx":
        raise SpeechmpqError(f"{out}: the output must be a .onnx file")
    if not out.parent.is_dir():
        raise SpeechmpqError(f"{out.parent}: no such folder")
    remove_stale_temporaries(out, ".partial")  # left by an export that was killed
    staging = temporary_name(out, ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        external = model.ByteSize() > external_data_threshold
        # a fresh data file name per export: the old graph keeps its own data until it is replaced
        data_name = f"{out.name}.{uuid.uuid4().hex[:8]}.data"
        staged = staging / out.name
        if external:
            onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name, size_threshold=1024)
        else:
            onnx.save_model(model, str(staged))
        onnx.checker.check_model(str(staged), full_check=True)
        external = (staging / data_name).exists()  # no data file when every tensor is small
        written = []
        if external:
            (staging / data_name).replace(out.with_name(data_name))
            written.append(out.with_name(data_name))
        staged.replace(out)
        for stale in out.parent.glob(f"{out.name}.*.data"):  # earlier exports' data, now unreferenced
            if stale.name != data_name:
                stale.unlink()
        return [out, *written]
    except OSError as error:
        raise SpeechmpqError(f"{out}: cannot write ({error.strerror or error})") from None
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first = str(error).strip().splitlines()[0]
        raise SpeechmpqError(f"{out}: the exported graph fails onnx.checker ({first})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)

