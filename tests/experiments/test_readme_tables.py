"""README.md and docs/ against results/*.json: every generated block must be what
experiments/readme_tables.py makes from the JSON it names, and the check must catch drift."""

import re
import shutil
from pathlib import Path

import pytest
import readme_tables

ROOT = Path(__file__).resolve().parents[2]


def test_readme_and_docs_match_the_json():
    problems = readme_tables.check(ROOT)
    assert problems == [], "run `python experiments/readme_tables.py`:\n" + "\n".join(problems)


def test_every_block_names_files_that_exist_and_the_readme_has_its_headline():
    names = {}
    for path in readme_tables.documents(ROOT):
        blocks, problems = readme_tables.find_blocks(path.read_text())
        assert problems == [], path
        for block in blocks:
            assert readme_tables.missing_sources(block.sources, ROOT) == [], (path, block.name)
        names[path.name] = {block.name for block in blocks}
    assert {"status", "headline", "verdicts"} <= names["README.md"]


@pytest.fixture
def checkout(tmp_path):
    """README.md, docs/, the model cards and every file the blocks read, copied into TMP_PATH; clean to
    start with."""
    shutil.copy(ROOT / "README.md", tmp_path)
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copytree(ROOT / "results", tmp_path / "results",
                    ignore=shutil.ignore_patterns("*.png", "*.tsv", "*.jsonl"))
    (tmp_path / "models" / "demo-mpq").mkdir(parents=True)
    shutil.copy(ROOT / "models" / "demo-mpq" / "bitplan.json", tmp_path / "models" / "demo-mpq")
    for card in (ROOT / "models").glob("*.md"):
        shutil.copy(card, tmp_path / "models")
    assert readme_tables.check(tmp_path) == []
    return tmp_path


def _block_body(text: str, name: str) -> tuple[int, int]:
    block = next(b for b in readme_tables.find_blocks(text)[0] if b.name == name)
    return block.start, block.end


def test_the_check_catches_a_tampered_figure_and_the_generator_restores_it(checkout):
    readme = checkout / "README.md"
    original = readme.read_text()
    start, end = _block_body(original, "headline")
    number = re.compile(r"\b\d+\.\d\d\b").search(original, start, end)
    changed = "9" if number[0][-1] != "9" else "8"
    tampered = original[:number.end() - 1] + changed + original[number.end():]
    readme.write_text(tampered)

    problems = readme_tables.check(checkout)
    assert any(p.startswith("README.md: block 'headline' differs") for p in problems), problems
    assert readme_tables.main(["--check", "--root", str(checkout)]) == 1
    assert readme.read_text() == tampered  # --check changes nothing

    assert readme_tables.main(["--root", str(checkout)]) == 0
    assert readme.read_text() == original
    assert readme_tables.check(checkout) == []
    assert not list(checkout.glob(".README.md.*"))  # the atomic write left no temporary file


def test_the_check_catches_a_changed_json(checkout):
    path = checkout / "results" / "pipeline_whisper-base" / "verdicts.json"
    text = path.read_text()
    changed = text.replace('"p_value": 0.094', '"p_value": 0.61', 1)
    assert changed != text
    path.write_text(changed)
    problems = readme_tables.check(checkout)
    assert any(p.startswith("README.md: block 'verdicts' differs") for p in problems), problems


def test_the_check_catches_a_missing_json(checkout):
    (checkout / "results" / "pipeline_whisper-base" / "bench.json").unlink()
    problems = readme_tables.check(checkout)
    assert any("README.md: block 'headline' names results/pipeline_whisper-base/bench.json, which does not "
               "exist" in p for p in problems), problems
    assert readme_tables.main(["--check", "--root", str(checkout)]) == 1


def test_the_check_catches_a_block_naming_a_json_that_does_not_exist(checkout):
    readme = checkout / "README.md"
    readme.write_text(readme.read_text().replace(
        "generated:verdicts source=results/pipeline_whisper-base/verdicts.json",
        "generated:verdicts source=results/pipeline/no-such.json"))
    problems = readme_tables.check(checkout)
    assert any("names results/pipeline/no-such.json, which does not exist" in p for p in problems), problems


def test_the_check_catches_an_unclosed_or_unknown_block(checkout):
    readme = checkout / "README.md"
    text = readme.read_text()
    unknown = "\n<!-- generated:no-such-block source=README.md -->\n<!-- /generated:no-such-block -->\n"
    readme.write_text(text.replace("<!-- /generated:verdicts -->", "") + unknown)
    problems = readme_tables.check(checkout)
    assert any("block 'verdicts' has no closing marker" in p for p in problems), problems
    assert any("block 'no-such-block' is not one the generator knows" in p for p in problems), problems


def test_an_indented_marker_is_an_example_not_a_block():
    text = ("    <!-- generated:headline source=results/pipeline/pipeline.json -->\n    ...\n"
            "    <!-- /generated:headline -->\n")
    assert readme_tables.find_blocks(text) == ([], [])
