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


def cpu_model() -> str:
    "The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows."
    try:
        with open("/proc/cpuinfo") as f:
            return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


def machine() -> dict:
    "Host, CPU model, count and bfloat16 features, torch's threads, platform and GPU model (None without CUDA)."
    from cifar_gradcam.model import cpu_bf16_native
    return {"host": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_amx": bool(torch.cpu._is_amx_tile_supported()) if hasattr(torch.cpu, "_is_amx_tile_supported") else None,
            "cpu_avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()) if hasattr(torch.cpu, "_is_avx512_bf16_supported") else None,
            "cpu_bf16_native": cpu_bf16_native(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
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


def result_path(name: str, m: dict, out: Path = RESULTS) -> Path:
    "Where the results `name` of machine `m` (a `machine()` dict) go."
    # a CPU run names the CPU model, so that results from two kinds of machine never overwrite each other
    kind = m.get("gpu") or ("cpu-" + "_".join(m["cpu"].split()[:2]) if m.get("cpu") else "cpu")
    return out / f"{name}-{kind}-{os.cpu_count()}cpu.json".replace(" ", "_")


def write(name: str, report: dict, out: Path = RESULTS) -> Path:
    "Write `report` (with machine and versions added by the caller) as JSON; return the path."
    out.mkdir(parents=True, exist_ok=True)
    path = result_path(name, report.get("machine", {}), out)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print("wrote", path)
    return path
