"""The package's layout: the README's Python example runs, old module paths still import, nothing uses them.

The layers themselves (no lower layer imports a higher one, no import cycles) are checked by
import-linter (`lint-imports`, run by `make lint`), from the contracts in pyproject.toml.
"""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from paddyclf._moved import MOVED
from paddyclf.data.synthetic import make_dataset

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "paddyclf"

# the Python API section of the README before the subpackages (paddyclf 0.1), import by import
OLD_README_IMPORTS = """
from paddyclf.config import TrainConfig
from paddyclf.train import train
from paddyclf.models import create_model, MobileNetV3_Small_BoT_Linear
from paddyclf.audit import run_audit
from paddyclf.prepare import prepare_dataset
from paddyclf.inference import load_predictor
from paddyclf.export import ExportOptions, export_model
from paddyclf.serve.config import ServeConfig
from paddyclf.serve.service import DiagnosisService
from paddyclf.serve.app import create_app
"""


def readme_python_api_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Python API\n") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_python_api_example_runs(tiny_data, tmp_path):
    pytest.importorskip("fastapi")
    shutil.copytree(tiny_data, tmp_path / "data" / "demo")
    make_dataset(tmp_path / "tree", per_class=6, size=64, fractions=(1.0, 0.0, 0.0))
    shutil.move(tmp_path / "tree" / "images", tmp_path / "rice5")  # a class-per-folder tree
    shutil.copy(sorted((tiny_data / "images" / "blast").glob("*.jpg"))[0], tmp_path / "leaf.jpg")
    (tmp_path / "example.py").write_text(readme_python_api_example())
    done = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:__main__", "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "data" / "rice5" / "metadata.csv").is_file() and (tmp_path / "audit" / "audit.json").is_file()
    statuses = re.search(r"^\[('(ok|unsure|out_of_distribution)'(, )?)+\]", done.stdout, re.M)
    assert statuses, done.stdout[-2000:]
    assert (tmp_path / "serve_data").is_dir()


def test_the_old_readme_imports_still_work_and_warn_with_the_new_path():
    pytest.importorskip("fastapi")
    names: dict[str, object] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(OLD_README_IMPORTS, names)  # noqa: S102 - the documented import lines themselves
    moved = sorted(str(w.message).split()[0] for w in caught if issubclass(w.category, DeprecationWarning))
    assert moved == ["paddyclf.audit", "paddyclf.config", "paddyclf.prepare", "paddyclf.train"]
    assert all("has moved to paddyclf." in str(w.message) for w in caught if w.category is DeprecationWarning)
    assert {w.filename for w in caught if w.category is DeprecationWarning} == {"<string>"}  # the user's import line
    from paddyclf.data.audit import run_audit
    from paddyclf.training import TrainConfig, train

    assert names["train"] is train and names["TrainConfig"] is TrainConfig and names["run_audit"] is run_audit


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_moved_module_is_an_alias_of_its_new_home(old):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        alias = importlib.import_module(old)
    new = importlib.import_module(MOVED[old])
    public = [name for name in dir(new) if not name.startswith("_")]
    assert public and all(getattr(alias, name) is getattr(new, name) for name in public)
    with pytest.raises(AttributeError):
        alias.no_such_name  # noqa: B018


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the paddyclf modules ``path`` imports (relative imports resolved), anywhere in it."""
    package = ".".join(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("paddyclf")}


def test_no_module_of_the_package_imports_an_old_path():
    offenders = {
        str(path.relative_to(SOURCE)): sorted(imported_modules(path) & set(MOVED)) for path in SOURCE.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_the_package_imports_none_of_its_subpackages():
    code = "import paddyclf, sys; print(sorted(m for m in sys.modules if m.startswith('paddyclf.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['paddyclf._moved']"
