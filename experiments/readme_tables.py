"""Every figure of README.md, docs/*.md and models/*.md that comes from results/*.json, written from the JSON.

    python experiments/readme_tables.py            # rewrite every generated block in place
    python experiments/readme_tables.py --check    # exit 1 and name each block that differs

A generated block is the text between two marker comments, each a line of its own:

    <!-- generated:NAME source=results/a.json,results/b.json -->
    ...what the generator's block NAME makes from those files...
    <!-- /generated:NAME -->

The blocks are defined in readme_tables_blocks.py and readme_tables_frontier.py (README),
readme_tables_model.py, readme_tables_runtime.py and readme_tables_index.py (docs/). ``source``
names the files the block's figures come from (a glob pattern stands for every file it matches); it
must be what the generator reads, and each must exist. Text outside the markers is never touched. A
rewrite replaces each changed file atomically (temporary file + rename). The check reports a block
whose text differs from what the JSON gives, a block that names a missing file, an unknown or
unclosed block, and a generator block used in no file.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import readme_tables_frontier  # noqa: F401  registers README's frontier block
import readme_tables_index  # noqa: F401  registers the index of results/
import readme_tables_model  # noqa: F401  registers the blocks of docs/ about the method, plans, export, model
import readme_tables_runtime  # noqa: F401  registers the blocks of docs/ about running it
import readme_tables_whisper  # noqa: F401  registers the blocks about the Whisper-encoder models
from readme_tables_blocks import BLOCKS, Results

from speechmpq.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
# A marker is a whole line of its own (so an indented example in a code block is not one).
OPEN = re.compile(r"^<!-- generated:(?P<name>[A-Za-z0-9_-]+) source=(?P<source>\S+) -->\n", re.MULTILINE)
CLOSE = "<!-- /generated:{name} -->"


@dataclass(frozen=True)
class Found:
    """One generated block as it stands in a file."""

    name: str
    sources: tuple[str, ...]  # as the opening marker names them
    start: int  # offset of the opening marker
    end: int  # offset just past the closing marker
    body: str  # text between the markers


def documents(root: Path) -> list[Path]:
    """The files that may hold generated blocks: README.md, docs/*.md and the model cards models/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md")),
            *sorted((root / "models").glob("*.md"))]


def _closing(text: str, close: str, start: int) -> int:
    """Offset of the line CLOSE at or after START, or -1."""
    if text.startswith(close, start):
        return start
    found = text.find("\n" + close, start)
    return found + 1 if found >= 0 else -1


def find_blocks(text: str) -> tuple[list[Found], list[str]]:
    """The blocks of one file, and what is malformed (an opening marker without its closing one)."""
    found, problems, position = [], [], 0
    while (match := OPEN.search(text, position)) is not None:
        name = match["name"]
        close = CLOSE.format(name=name)
        end = _closing(text, close, match.end())
        if end < 0:
            problems.append(f"block '{name}' has no closing marker {close}")
            position = match.end()
            continue
        found.append(Found(name, tuple(match["source"].split(",")), match.start(), end + len(close),
                           text[match.end():end]))
        position = end + len(close)
    return found, problems


def render(name: str, results: Results) -> str:
    """The whole block NAME as the generator writes it, markers included."""
    block = BLOCKS[name]
    body = block.render(results).rstrip("\n") + "\n"
    return f"<!-- generated:{name} source={','.join(block.sources)} -->\n{body}{CLOSE.format(name=name)}"


def missing_sources(sources: tuple[str, ...], root: Path) -> list[str]:
    """The named files (or glob patterns) that match nothing under ROOT."""
    return [source for source in sources if not any(root.glob(source))]


def regenerate(text: str, results: Results, where: str) -> tuple[str, list[str], list[str]]:
    """TEXT with every block rewritten from the JSON; what is wrong in it; and which blocks differ
    from what their JSON gives (each message names WHERE)."""
    found, problems = find_blocks(text)
    problems, differ = [f"{where}: {problem}" for problem in problems], []
    pieces, position = [], 0
    for block in found:
        label = f"{where}: block '{block.name}'"
        for source in missing_sources(block.sources, results.root):
            problems.append(f"{label} names {source}, which does not exist")
        if block.name not in BLOCKS:
            problems.append(f"{label} is not one the generator knows ({', '.join(sorted(BLOCKS))})")
            continue
        sources = ",".join(BLOCKS[block.name].sources)
        missing = missing_sources(BLOCKS[block.name].sources, results.root)
        if missing:
            problems.append(f"{label} reads {', '.join(missing)}, which does not exist")
            continue
        try:
            new = render(block.name, results)
        except (KeyError, IndexError, TypeError, ValueError) as error:
            problems.append(f"{label} cannot be made from {sources} ({type(error).__name__}: {error})")
            continue
        if new != text[block.start:block.end]:
            differ.append(f"{label} differs from what {sources} gives")
        pieces += [text[position:block.start], new]
        position = block.end
    return "".join(pieces) + text[position:], problems, differ


def check(root: Path = ROOT) -> list[str]:
    """Everything that differs from what the generator makes: empty when README and docs are current."""
    results, problems, used = Results(root), [], set()
    for path in documents(root):
        if not path.is_file():
            problems.append(f"{path.relative_to(root)} does not exist")
            continue
        text = path.read_text()
        _, found, differ = regenerate(text, results, str(path.relative_to(root)))
        problems += found + differ
        used.update(block.name for block in find_blocks(text)[0])
    problems += [f"block '{name}' is in no file" for name in sorted(set(BLOCKS) - used)]
    return problems


def rewrite(root: Path = ROOT) -> list[str]:
    """Rewrite every block in place (each changed file atomically); returns what could not be made."""
    results, problems = Results(root), []
    for path in documents(root):
        if not path.is_file():
            continue
        text = path.read_text()
        new, found, _ = regenerate(text, results, str(path.relative_to(root)))
        problems += found
        if new != text:
            atomic_write(path, new)
            print(f"rewrote {path.relative_to(root)}", file=sys.stderr)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any block differs")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    args = parser.parse_args(argv)
    problems = check(args.root) if args.check else rewrite(args.root)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
