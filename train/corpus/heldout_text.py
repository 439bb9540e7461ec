"""Held-out test text: English sentences from Python's own documentation, not from the corpus grammar.

    python -m speechmpq.train.corpus.heldout_text --out train/corpus/wordlists/heldout_python_docs.txt

A second test corpus spoken from these sentences (``speechmpq corpus --sentences FILE``) has
sentence shapes and words that no part of the project generated: the docstrings of the standard
library's modules, classes and functions and the language reference's topics
(``pydoc_data.topics``). Kept: sentences of 5-25 words that start with a capital and a lower-case
letter, end in . ? or !, and hold no code (no digits, brackets, operators, dotted names, acronyms).
The committed file was made with CPython 3.11.7; another Python version gives another list, so
the corpus reads the committed file, not the running Python's docs.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import sysconfig
from pathlib import Path

from speechmpq.files import atomic_write

# the committed list, read by the held-out corpora (never the running Python's docs)
HELDOUT_TEXT = Path(__file__).with_name("wordlists") / "heldout_python_docs.txt"
_CODE = re.compile(r"[_=(){}\[\]<>*#@$%^&|\\/:;`\"~+]|\.\w|\w\.\w|>>>|\d|\be\.g\b|\bi\.e\b|--")
_SKIP = ("test", "tests", "idlelib", "site-packages", "lib2to3")


def docstrings() -> list[str]:
    import pydoc_data.topics

    texts = list(pydoc_data.topics.topics.values())
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        if any(part in path.parts for part in _SKIP):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text:
                    texts.append(text)
    return texts


def sentences(texts: list[str]) -> list[str]:
    kept = set()
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            for sentence in re.split(r"(?<=[.!?])\s+", " ".join(paragraph.split())):
                if not 5 <= len(sentence.split()) <= 25 or _CODE.search(sentence):
                    continue
                if not re.match(r"^[A-Z][a-z]", sentence) or not sentence.endswith((".", "?", "!")):
                    continue
                if any(len(w) > 1 and w.isupper() for w in re.findall(r"[A-Za-z']+", sentence)):
                    continue
                kept.add(sentence)
    return sorted(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    found = sentences(docstrings())
    atomic_write(args.out, "\n".join(found) + "\n")
    print(f"wrote {len(found)} sentences to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
