"""Run every lesson top to bottom, every cell, as a Colab user's "Run all" does (nbval skips some cells; this does not).

    python tools/run_lessons.py                 # smoke mode on synthetic data (what CI runs in the Colab-like venv)
    python tools/run_lessons.py nbs/03_model.ipynb

Each notebook runs in a fresh kernel of this Python, in a scratch copy of `nbs/` (so nothing in the checkout changes),
with `CIFAR_GRADCAM_SMOKE=1` and `CIFAR_GRADCAM_DATA=synthetic` unless they are set. Prints one line per notebook with
its time; exits 1 if any cell fails, naming the notebook and the cell.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def run(nb_path: Path, workdir: Path, timeout: int) -> tuple[bool, float, str]:
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:                      # what Colab sees: the code, none of the stored outputs
        if cell.cell_type == "code": cell.outputs, cell.execution_count = [], None
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    try:
        client.execute()
        return True, time.perf_counter() - t0, ""
    except CellExecutionError as e:
        return False, time.perf_counter() - t0, str(e).strip().splitlines()[-1][:300]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every nbs/*.ipynb, index included")
    p.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = p.parse_args()
    os.environ.setdefault("CIFAR_GRADCAM_SMOKE", "1")
    os.environ.setdefault("CIFAR_GRADCAM_DATA", "synthetic")
    os.environ.setdefault("MPLBACKEND", "Agg")
    paths = args.notebooks or sorted((ROOT / "nbs").glob("*.ipynb"))
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "nbs"
        shutil.copytree(ROOT / "nbs", work, ignore=shutil.ignore_patterns("runs", "_proc", ".quarto"))
        for path in paths:
            ok, secs, why = run(work / Path(path).name, work, args.timeout)
            print(f"{'ok  ' if ok else 'FAIL'} {Path(path).name:28s} {secs:6.1f} s" + (f"  {why}" if why else ""), flush=True)
            if not ok: failed.append(Path(path).name)
    if failed: print(f"{len(failed)} notebook(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
