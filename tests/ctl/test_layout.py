"""bootbusctl's modules import one way: each only from those listed before it.

The order is the module map in bootbus/ctl/__init__.py's docstring, so the
map and the code cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import bootbus.ctl

PACKAGE_DIR = Path(bootbus.ctl.__file__).resolve().parent
MAP_LINE = re.compile(r"^    ([a-z]+) {2,}\S", re.MULTILINE)


def documented_order() -> list[str]:
    return MAP_LINE.findall(bootbus.ctl.__doc__ or "")


def sibling_imports(path: Path) -> set[str]:
    """The package's modules that `path` imports (relative imports of level 1)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_the_map_names_every_module() -> None:
    modules = {p.stem for p in PACKAGE_DIR.glob("*.py")} - {"__init__", "__main__"}
    assert sorted(documented_order()) == sorted(modules)


def test_each_module_imports_only_those_before_it() -> None:
    order = documented_order()
    for index, module in enumerate(order):
        later = sibling_imports(PACKAGE_DIR / f"{module}.py") - set(order[:index])
        assert not later, f"{module} imports {sorted(later)}, listed after it"


def test_no_module_imports_the_package_itself() -> None:
    """A submodule importing bootbus.ctl would depend on everything, cli included."""
    for path in PACKAGE_DIR.glob("*.py"):
        if path.stem in ("__init__", "__main__"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module is None:
                assert all(alias.name != "ctl" for alias in node.names), path.name
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert not (node.module or "").startswith("bootbus.ctl"), path.name
