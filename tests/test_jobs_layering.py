"""The jobs layer knows no job kind: no module under lora_mcp/jobs imports training, captioning or review (read from
the source with ast, so an import inside a function counts as much as one at the top)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lora_mcp.jobs

JOBS = Path(lora_mcp.jobs.__file__).parent
FORBIDDEN = ("lora_mcp.training", "lora_mcp.captioning", "lora_mcp.review", "lora_mcp.assembly")
MODULES = sorted(JOBS.rglob("*.py"))


def package_of(path: Path) -> str:
    """The dotted package a module under lora_mcp/jobs belongs to (for relative imports)."""
    return ".".join(("lora_mcp", *path.relative_to(JOBS.parent).parent.parts))


def imported_modules(source: str, package: str) -> set[str]:
    """Every module name an import statement in `source` names (relative imports resolved against `package`)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def forbidden(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))


def test_every_jobs_module_is_checked() -> None:
    assert JOBS / "manager.py" in MODULES and JOBS / "executors" / "ray.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(JOBS)))
def test_no_jobs_module_imports_a_kind(path: Path) -> None:
    bad = forbidden(imported_modules(path.read_text(encoding="utf-8"), package_of(path)))
    assert not bad, f"{path.relative_to(JOBS.parent)} imports {bad}: kinds reach the jobs layer through KindHandler"


@pytest.mark.parametrize(
    "source",
    [
        "def f():\n    from lora_mcp.training.result import training_result\n",
        "import lora_mcp.review.service as s\n",
        "from ... import captioning\n",
        "from lora_mcp import assembly\n",
        "if TYPE_CHECKING:\n    from ...training import trainjob\n",
    ],
)
def test_the_check_catches_late_relative_and_aliased_imports(source: str) -> None:
    assert forbidden(imported_modules(source, "lora_mcp.jobs.executors"))


def test_the_check_lets_the_jobs_layer_import_itself() -> None:
    source = "from lora_mcp.jobs.models import JobKind\nfrom .base import Executor\nimport json\n"
    assert not forbidden(imported_modules(source, "lora_mcp.jobs.executors"))
