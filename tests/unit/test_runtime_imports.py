"""What the production image holds is what the product imports: every module that services/,
shared/ and aftersales/ (the image's wheel, see Dockerfile) import at run time comes from the
standard library, from those packages, or from a distribution pinned in requirements/runtime.txt
(the image's lock); the tools-only packages are in none of them.

Imports are read with ast, not by importing: an import under `if TYPE_CHECKING:` is not made at
run time, and one guarded by `except ImportError` is optional (the tools' commands, added where
the tools are installed)."""

from __future__ import annotations

import ast
import functools
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from tests.unit.test_lock import TOOLS_ONLY, parse_lock

ROOT = Path(__file__).resolve().parents[2]
IMAGE_PACKAGES = ("services", "shared", "aftersales")  # what the Dockerfile's build stage copies into the wheel


def _guarded(handler: ast.ExceptHandler) -> bool:
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names)


def runtime_imports(source: str) -> set[str]:
    """The top-level modules a source file imports at run time (absolute imports only)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Try) and any(_guarded(h) for h in node.handlers):
            for child in (*node.handlers, *node.orelse, *node.finalbody):
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


@functools.cache
def _top_levels() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _top_levels().get(module, [])}


def unlocked_imports(files: list[Path], locked: set[str]) -> dict[str, list[str]]:
    """{module: [files]} for the imports neither standard, first-party nor from a locked distribution."""
    problems: dict[str, list[str]] = {}
    for path in files:
        for module in runtime_imports(path.read_text()):
            if module in sys.stdlib_module_names or module in IMAGE_PACKAGES or module == "__future__":
                continue
            if not distributions_of(module) & locked:
                problems.setdefault(module, []).append(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path))
    return problems


def image_sources() -> list[Path]:
    return sorted(p for package in IMAGE_PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_every_module_the_services_import_is_in_the_image_lock() -> None:
    locked = set(parse_lock((ROOT / "requirements" / "runtime.txt").read_text()))
    assert len(image_sources()) > 100
    problems = unlocked_imports(image_sources(), locked)
    assert not problems, "imported at run time but not in requirements/runtime.txt (add it to pyproject's " \
                         f"dependencies and run `make lock`, or import it only in tools/): {problems}"


def test_the_tools_only_packages_are_not_in_the_image_nor_imported_by_it() -> None:
    locked = set(parse_lock((ROOT / "requirements" / "runtime.txt").read_text()))
    assert not TOOLS_ONLY & locked
    imported = {m for p in image_sources() for m in runtime_imports(p.read_text())}
    tools_modules = {m for m in imported if distributions_of(m) & TOOLS_ONLY}
    assert not tools_modules, f"the image's code imports tools-only packages: {tools_modules}"
    # py-spy is a program, not a module: declared in the tools extra, where the benchmarks call it
    spy_users = [p for p in (ROOT / "tools").rglob("*.py") if '"py-spy"' in p.read_text()]
    assert spy_users and not [p for p in image_sources() if "py-spy" in p.read_text()]


def test_the_check_catches_an_unlocked_import_and_ignores_guarded_ones(tmp_path: Path) -> None:
    source = tmp_path / "handler.py"
    source.write_text(
        "from __future__ import annotations\nimport json, orjson\nfrom typing import TYPE_CHECKING\n"
        "import aiosmtpd.smtp\nif TYPE_CHECKING:\n    import hypothesis\n"
        "try:\n    from tools.cli import register\nexcept ImportError:\n    register = None\n"
        "from . import sibling\n"
        "def f():\n    import faststream\n")
    assert runtime_imports(source.read_text()) == {"__future__", "json", "orjson", "typing", "aiosmtpd", "faststream"}
    locked = set(parse_lock((ROOT / "requirements" / "runtime.txt").read_text()))
    assert set(unlocked_imports([source], locked)) == {"aiosmtpd", "faststream"}
