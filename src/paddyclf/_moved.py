"""The module paths of paddyclf 0.1 (one flat folder), kept as deprecated aliases of their new homes.

``from paddyclf.train import train`` still works: importing an old path gives a small alias module
that forwards every attribute to the new module (PEP 562 ``__getattr__``) and warns once with a
:class:`DeprecationWarning` that names the new path. Nothing inside the package imports an old path
(``tests/test_layout.py`` checks it), so the aliases cost nothing unless a user's script asks for one.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings

REMOVED_IN = "0.3"

MOVED = {
    "paddyclf.config": "paddyclf.training.config",
    "paddyclf.train": "paddyclf.training.run",
    "paddyclf.engine": "paddyclf.training.engine",
    "paddyclf.recipe": "paddyclf.training.recipe",
    "paddyclf.runstate": "paddyclf.training.state",
    "paddyclf.distributed": "paddyclf.training.distributed",
    "paddyclf.augment": "paddyclf.data.augment",
    "paddyclf.prepare": "paddyclf.data.prepare",
    "paddyclf.audit": "paddyclf.data.audit",
    "paddyclf.dedupe": "paddyclf.data.dedupe",
    "paddyclf.synthetic": "paddyclf.data.synthetic",
    "paddyclf.nonleaf": "paddyclf.data.nonleaf",
    "paddyclf.calibration": "paddyclf.trust.calibration",
    "paddyclf.ood": "paddyclf.trust.ood",
    "paddyclf.runtimes": "paddyclf.inference.runtimes",
    "paddyclf.predict": "paddyclf.inference.predict",
    "paddyclf.evaluate": "paddyclf.inference.evaluate",
    "paddyclf.explain": "paddyclf.inference.explain",
    "paddyclf.compare": "paddyclf.inference.compare",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a fresh, empty module: the default

    def exec_module(self, module: types.ModuleType) -> None:
        target = importlib.import_module(self.target)
        module.__doc__ = f"Deprecated alias of :mod:`{self.target}` (removed in paddyclf {REMOVED_IN})."
        module.__getattr__ = lambda name: getattr(target, name)  # PEP 562: every name of the new module
        module.__dir__ = lambda: dir(target)


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (and only those) on ``sys.meta_path``."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        warnings.warn(
            f"{fullname} has moved to {new}; import it from there (the old path goes in paddyclf {REMOVED_IN}).",
            DeprecationWarning,
            stacklevel=2,  # the user's import: `warnings` skips the frames of the import machinery
        )
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the normal finders: a real module always wins)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
