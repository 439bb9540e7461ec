"""speechmpq.train's face: the public names resolve lazily, and importing the package (or the corpus
builder its worker processes import) loads no torch."""

import subprocess
import sys

import pytest

import speechmpq.train as train


@pytest.mark.parametrize("modules", [["speechmpq.train"],
                                     ["speechmpq.train", "speechmpq.train.corpus.build"]])
def test_importing_the_face_or_the_corpus_builder_loads_no_torch(modules):
    code = (f"import sys, {', '.join(modules)}\n"
            "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_public_name_resolves_from_the_module_the_face_names():
    where = {name: module for module, names in train._EXPORTS.items() for name in names}
    assert sorted(train.__all__) == sorted(where)
    assert len(set(train.__all__)) == len(train.__all__)
    for name in train.__all__:
        value = getattr(train, name)
        assert value is getattr(sys.modules[f"speechmpq.train.{where[name]}"], name), name
    assert set(train.__all__) <= set(dir(train))


def test_unknown_names_fail_and_submodules_still_import():
    with pytest.raises(AttributeError, match="no_such_name"):
        train.no_such_name  # noqa: B018
    from speechmpq.train import supernet

    assert supernet.__name__ == "speechmpq.train.supernet"
    assert train.quantize_model.__module__ == "speechmpq.train.quantize"
