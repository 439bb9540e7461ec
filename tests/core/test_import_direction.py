"""Imports run one way: core <- stages <- jobs and the command line (STYLE.md, "The house").

Every ``import``/``from ... import`` of every installed file is read with ``ast``, module level and
inside functions alike, and checked against the allowed arrows:

    core (speechmpq/*.py)   imports only the core
    train                   core
    export                  core, and train's model and quantizer modules (EXPORT_MAY_IMPORT)
    runtime                 core                        (numpy + onnxruntime: never torch code)
    edge_demo               core, runtime
    jobs                    core and every stage
    cli (speechmpq/cli/, speechmpq/__main__.py)   anything
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"speechmpq": "core", "train": "train", "export": "export", "runtime": "runtime",
           "edge_demo": "edge_demo", "jobs": "jobs"}
ALLOWED = {
    "core": {"core"},
    "train": {"core", "train"},
    "export": {"core", "export"},
    "runtime": {"core", "runtime"},
    "edge_demo": {"core", "runtime", "edge_demo"},
    "jobs": {"core", "train", "export", "runtime", "edge_demo", "jobs"},
    "cli": {"core", "train", "export", "runtime", "edge_demo", "jobs", "cli"},
}
# export builds the model it exports from train's model definitions and reads train's quantizer
# output; it never runs training code
EXPORT_MAY_IMPORT = ("speechmpq.train.models", "speechmpq.train.quant", "speechmpq.train.qmodel")


def layer_of_file(path: Path, root: Path) -> str:
    relative = path.relative_to(root)
    if relative.parts[0] == "speechmpq" and (relative.parts[1] == "cli" or relative.name == "__main__.py"):
        return "cli"
    return FOLDERS[relative.parts[0]]


def layer_of_module(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "speechmpq":
        return None
    if len(parts) == 1:
        return "core"
    return {"train": "train", "export": "export", "runtime": "runtime", "edge_demo": "edge_demo",
            "jobs": "jobs", "cli": "cli", "__main__": "cli"}.get(parts[1], "core")


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # module.name: "from speechmpq.train import trainer" imports speechmpq.train.trainer
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(files: list[Path], root: Path = ROOT) -> list[str]:
    wrong = []
    for path in files:
        source = layer_of_file(path, root)
        for line, module in imported_modules(ast.parse(path.read_text(), str(path))):
            target = layer_of_module(module)
            if target is None or target in ALLOWED[source]:
                continue
            if source == "export" and module.startswith(EXPORT_MAY_IMPORT):
                continue
            wrong.append(f"{path.relative_to(root)}:{line}: {source} imports {module} ({target})")
    return wrong


def installed_files() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def test_every_import_runs_the_allowed_way():
    files = installed_files()
    assert len(files) > 50  # the scan found the package
    assert violations(files) == []


@pytest.mark.parametrize(("folder", "code", "expected"), [
    ("runtime", "from speechmpq.train.models import load_model\n", "runtime imports speechmpq.train.models"),
    ("speechmpq", "def f():\n    from speechmpq.jobs import pipeline\n", "core imports speechmpq.jobs"),
    ("train", "import speechmpq.export.qdq\n", "train imports speechmpq.export.qdq"),
    ("export", "from speechmpq.train import trainer\n", "export imports speechmpq.train.trainer"),
    ("edge_demo", "from speechmpq import jobs\n", "edge_demo imports speechmpq.jobs"),
])
def test_the_check_fails_on_a_wrong_way_import(tmp_path, folder, code, expected):
    (tmp_path / folder).mkdir()
    bad = tmp_path / folder / "bad.py"
    bad.write_text(code)
    found = violations([bad], tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_allowed_imports_pass(tmp_path):
    (tmp_path / "export").mkdir()
    good = tmp_path / "export" / "good.py"
    good.write_text("from speechmpq.train.models import load_model\nfrom speechmpq import bitplan\n")
    assert violations([good], tmp_path) == []
