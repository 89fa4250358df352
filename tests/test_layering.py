"""core/ and ml/ must not import Qt (DESIGN.md): checked on the source and at import time."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "desktop_app"
QT_MODULES = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "pyqtgraph", "qtpy", "superqt")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
            names.update(".".join(alias.name.split(".")[:2]) for alias in node.names
                         if alias.name.startswith("desktop_app."))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
            if node.module.startswith("desktop_app."):  # the layer: desktop_app.gui, ...
                names.add(".".join(node.module.split(".")[:2]))
        elif isinstance(node, ast.ImportFrom) and node.level and node.module:
            if node.module.split(".")[0] == "gui":
                names.add("desktop_app.gui")
    return names


def test_core_and_ml_sources_import_no_qt():
    offenders = []
    for layer in ("core", "ml"):
        for path in (PACKAGE / layer).rglob("*.py"):
            bad = _imports(path) & (set(QT_MODULES) | {"desktop_app.gui"})
            if bad:
                offenders.append(f"{path.relative_to(PACKAGE)}: {sorted(bad)}")
    assert not offenders, "Qt imported outside gui/:\n" + "\n".join(offenders)


def test_core_imports_no_torch():
    offenders = [str(p.relative_to(PACKAGE)) for p in (PACKAGE / "core").rglob("*.py")
                 if _imports(p) & {"torch", "transformers", "peft", "desktop_app.ml"}]
    assert not offenders, offenders


@pytest.mark.slow  # a fresh process imports the whole ML stack
def test_importing_every_core_and_ml_module_loads_no_qt():
    modules = [".".join(("desktop_app",) + p.relative_to(PACKAGE).with_suffix("").parts)
               for layer in ("core", "ml") for p in sorted((PACKAGE / layer).rglob("*.py"))
               if p.stem != "__init__"]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = [m for m in sys.modules if m.split('.')[0] in {QT_MODULES!r}]\n"
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_store_loads_without_pandas_and_pandas_still_imports_after():
    """sqlite_utils would import pandas (half a second, ~60 MB in every process) only to map a
    type the store never writes; core.data.sqlite_utils_import hides it for that import."""
    pytest.importorskip("pandas")
    code = ("import sys\n"
            "import desktop_app.core.data.store\n"
            "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
            "import pandas\n"
            "print(pandas.DataFrame({'a': [1]}).shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "(1, 1)" in result.stdout, result.stdout + result.stderr
