"""A stage's public face whose names load on first use (PEP 562).

A stage's ``__init__.py`` lists, per defining module, the names it exports, and takes its
``__all__``, ``__getattr__`` and ``__dir__`` from ``lazy_face``. Importing the package then loads
nothing heavy: corpus workers import ``speechmpq.train`` without torch, and the benchmark parent
imports ``speechmpq.runtime`` without onnxruntime (its children inherit its peak RSS).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_face(package: str, exports: dict[str, tuple[str, ...]]
              ) -> tuple[list[str], Callable[[str], object], Callable[[], list[str]]]:
    """``exports``: defining module (absolute) -> its public names. Returns (__all__, __getattr__,
    __dir__) for the package named ``package``."""
    home = {name: module for module, names in exports.items() for name in names}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str):
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(home))

    return list(home), __getattr__, __dir__
