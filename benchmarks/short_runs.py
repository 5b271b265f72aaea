"""The README's short first runs on the real images: does each learn, at the peak `short_run_peak` gives it?

    python benchmarks/short_runs.py --data ../shared/data/cifar10-jpeg-train.tar.gz --out runs/short
    python benchmarks/short_runs.py --data ../shared/data/cifar10-jpeg-train.tar.gz --out runs/short --collect

Each run is `cifar-gradcam train --limit N --epochs E` as a user types it, except that the peak learning rate is given
as the number the command's default would choose (`short_run_peak` of the recipe's peak for the run's steps), so that
the LR finder's sweep, which only informs the report, is skipped; the training is the same (the sweep uses a model and
generator of its own). `--collect` trains nothing and reads the run folders (a run stopped early is marked unfinished). Figures are validation accuracy
on the 5,000 images held out of the training images. Writes benchmarks/results/short_runs-<cpu or gpu>-<N>cpu.json.
`--only LIMIT` trains (or collects) that one run and keeps the other rows of the results file as they were measured
(each row names its folder and machine), so that one run can be redone without repeating the others.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from _report import machine, result_path, versions, write
from cifar_gradcam.cli import main as cli
from cifar_gradcam.train import History, TrainConfig, short_run_peak

#: The first runs the README suggests, (training images, epochs), shortest first.
SHORT_RUNS = ((2000, 1), (5000, 3), (10000, 5))


def peak(limit: int, epochs: int, cfg: TrainConfig = TrainConfig()) -> float:
    "The peak the command's default gives `--limit limit --epochs epochs` (rounded as it prints it)."
    return float(f"{short_run_peak(cfg.max_lr, epochs * (limit // cfg.batch_size)):.3g}")


def collect(folder: Path) -> dict:
    "One finished run folder's figures."
    h = History(json.loads((folder / "history.json").read_text()))
    cfg = json.loads((folder / "config.json").read_text())
    return {"folder": str(folder), "max_lr": cfg["max_lr"], "epochs": cfg["epochs"], "finished": len(h) == cfg["epochs"],
            "epochs_done": len(h), "batch_size": cfg["batch_size"],
            "val_acc_per_epoch": [round(r["val_acc"], 4) for r in h.records], "final_val_acc": h[-1]["val_acc"],
            "final_val_loss": h[-1]["val_loss"], "train_seconds": round(sum(r["train_seconds"] for r in h.records), 1),
            "seconds": round(sum(r["seconds"] for r in h.records), 1)}


def _kept_rows(name: str) -> dict:
    "The rows of this machine kind's results file, by training images, each with the machine it was measured on."
    path = result_path(name, machine())
    if not path.exists(): raise SystemExit(f"--only needs the earlier results in {path}: run without --only first")
    old = json.loads(path.read_text())
    return {r["limit"]: {**r, "machine": r.get("machine", old["machine"])} for r in old["runs"]}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", type=Path, required=True, help="a folder for the run folders")
    p.add_argument("--collect", action="store_true", help="read the finished runs; train nothing")
    p.add_argument("--name", default="short_runs")
    p.add_argument("--only", type=int, choices=[n for n, _ in SHORT_RUNS], default=None, metavar="LIMIT",
                   help="train or collect only the run of LIMIT images; keep the results file's other rows")
    args = p.parse_args()
    kept = _kept_rows(args.name) if args.only else {}
    rows = []
    for limit, epochs in SHORT_RUNS:
        if args.only and limit != args.only:
            if limit not in kept: raise SystemExit(f"--only {args.only}: the results file has no row for --limit {limit} to keep")
            rows.append(kept[limit]); continue
        folder = args.out / f"limit{limit}-epochs{epochs}"
        if not args.collect:
            code = cli(["train", "--data", str(args.data), "--limit", str(limit), "--epochs", str(epochs),
                        "--max-lr", str(peak(limit, epochs)), "--out", str(folder)])
            if code: raise SystemExit(f"the run in {folder} failed (exit {code})")
        row = {"limit": limit, "epochs": epochs, "steps": epochs * (limit // TrainConfig.batch_size), **collect(folder),
               "machine": machine()}
        if row["max_lr"] != peak(limit, epochs):
            raise SystemExit(f"{folder} trained at max_lr {row['max_lr']}, not the {peak(limit, epochs)} short_run_peak gives")
        rows.append(row)
        print(f"--limit {limit:>6,} --epochs {epochs}: {row['steps']:>4} steps at peak {row['max_lr']:g}: "
              f"validation accuracy {row['final_val_acc']:.2%} (loss {row['final_val_loss']:.3f})"
              + ("" if row["finished"] else f" after {row['epochs_done']} of {epochs} epochs: not finished (--resume)"))
    write(args.name, {"benchmark": args.name, "what": "the README's short runs: validation accuracy at short_run_peak",
                      "data": str(args.data), "val_images": 5000, "runs": rows, "machine": machine(),
                      "versions": versions("torch", "torchvision", "albumentations", "numpy")})


if __name__ == "__main__":
    main()
