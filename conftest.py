"""pytest setup shared by `pytest --nbval` over the lessons (nbs/) and the tests (tests/).

Three things make nbval and nbdev agree:

1. Smoke mode. `CIFAR_GRADCAM_SMOKE=1` (unless already set) shrinks every lesson to a CPU-sized
   run, and `CIFAR_GRADCAM_DATA=synthetic` (unless already set) keeps it offline. The notebook
   kernels inherit both from this process.
2. Execution counts. `nbdev_clean` blanks every cell's execution count but keeps its outputs, and
   nbval fails such a cell as "Unrun reference cell has outputs". A clean, committed notebook *is*
   a run notebook, so each code cell gets its position as its count before nbval looks at it.
3. nbdev's test flags. Cells marked `#| notest`, `#| slow`, `#| cuda` (settings.ini `tst_flags`)
   or `#| eval: false` are skipped, as `nbdev_test` skips them. `--nbdev-flags slow cuda` runs
   the cells of those flags too.
"""
from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("CIFAR_GRADCAM_SMOKE", "1")
os.environ.setdefault("CIFAR_GRADCAM_DATA", "synthetic")
os.environ.setdefault("MPLBACKEND", "Agg")

_DIRECTIVE = re.compile(r"^\s*#\s*\|\s*(.+?)\s*$")


def _tst_flags() -> set[str]:
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini", encoding="utf-8")
    return set(cfg["DEFAULT"].get("tst_flags", "notest").split())


def cell_directives(source: str) -> list[str]:
    """The nbdev `#| ...` directives at the top of a cell's source, in order."""
    out = []
    for line in source.splitlines():
        if not line.strip():
            continue
        m = _DIRECTIVE.match(line)
        if not m:
            break
        out.append(m.group(1))
    return out


def skip_reason(source: str, run_flags: set[str], tst_flags: set[str]) -> str | None:
    """Why nbdev_test would not run this cell, or None if it would."""
    for d in cell_directives(source):
        words = d.replace(":", " ").split()
        if words[:2] == ["eval", "false"]:
            return "nbdev `#| eval: false`"
        if words and words[0] in tst_flags and words[0] not in run_flags:
            return f"nbdev test flag `#| {words[0]}` (run it with --nbdev-flags {words[0]})"
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nbdev-flags", nargs="*", default=[],
                     help="nbdev test flags (settings.ini tst_flags) whose notebook cells should run")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_flags, tst_flags = set(config.getoption("--nbdev-flags") or []), _tst_flags()
    counts: dict[str, int] = {}
    for item in items:
        cell = getattr(item, "cell", None)
        if cell is None or getattr(cell, "cell_type", "code") != "code":
            continue
        nb = str(item.fspath)
        counts[nb] = counts.get(nb, 0) + 1
        if cell.get("execution_count") is None:
            cell["execution_count"] = counts[nb]
        reason = skip_reason(cell.source, run_flags, tst_flags)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
