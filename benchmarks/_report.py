"""What every benchmark records next to its figures: the machine, the library versions, and where
the JSON goes (benchmarks/results/<name>-<gpu or cpu>-<N>cpu.json)."""
from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    "Host, CPU count, platform and GPU model (None without CUDA)."
    return {"host": platform.node(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def versions(*packages: str) -> dict:
    "Python's version and each installed package's."
    out = {"python": platform.python_version()}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def write(name: str, report: dict, out: Path = RESULTS) -> Path:
    "Write `report` (with machine and versions added by the caller) as JSON; return the path."
    out.mkdir(parents=True, exist_ok=True)
    gpu = report.get("machine", {}).get("gpu")
    path = out / f"{name}-{gpu or 'cpu'}-{os.cpu_count()}cpu.json".replace(" ", "_")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", path)
    return path
