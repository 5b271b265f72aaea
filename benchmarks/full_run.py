"""The full training run, timed: seconds per epoch and validation accuracy of the default recipe.

Trains a fresh ResNet-18 with `TrainConfig()` (20 epochs; change single settings with --set) on the
training split of the real CIFAR-10 set and evaluates on the 5,000-image validation split after every
epoch, then once more with flip TTA. Reports seconds per epoch (all of them, and the median of epochs
2.., since the first pays for cudnn's autotuning and any compiling), training images/s, wall time, and
the final and best accuracy, and which validation images the final model got right (packed bits, for the paired
test of `compare_runs.py`).

    python benchmarks/full_run.py --data ../shared/data/cifar10-jpeg-train.tar.gz --loader device --compile
    python benchmarks/full_run.py --data synthetic --epochs 2 --limit 640 --set batch_size=32   # a CPU check
    python benchmarks/full_run.py --data ../shared/data/cifar10-jpeg-train.tar.gz --from-run runs/full   # report a run

`--from-run DIR` trains nothing: it reports the run that `cifar-gradcam run --out DIR` made (its history.json,
config.json and last.pt, the final model), evaluating the final model again without and with flip TTA on the
validation split of --data, which must be the run's data (checked against its checkpoint). With `--weights train_model`
it scores SGD's own weights of a run made with `--set ema_decay=...` instead of the average (the same run without EMA).

Writes benchmarks/results/full_run-<gpu or cpu>-<N>cpu.json (--name changes the first part).
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from _report import machine, versions, write
from cifar_gradcam import data as D
from cifar_gradcam import device_loader as DL
from cifar_gradcam import loaders as L
from cifar_gradcam.model import get_device, resnet18
from cifar_gradcam.evaluate import Predictions, predict
from cifar_gradcam.checkpoint import data_signature, load_model, load_weights
from cifar_gradcam.cli import UsageError, parse_settings
from cifar_gradcam.train import History, TrainConfig, fit, seed_everything


def parse_set(items: list[str]) -> dict:
    """KEY=VALUE items as TrainConfig overrides, parsed and type-checked by the CLI's `parse_settings` (a bad one ends the
    script with its message); here only --epochs, --loader and --compile have options of their own."""
    try:
        return parse_settings(items, own={"epochs": "--epochs", "loader": "--loader", "compile": "--compile"})
    except UsageError as e:
        raise SystemExit(str(e)) from None


def _summary(h, train: D.Split, config: TrainConfig) -> dict:
    secs = [r["seconds"] for r in h.records]
    train_secs = [r["train_seconds"] for r in h.records]
    steady = secs[1:] or secs
    trained = (len(train) // config.batch_size) * config.batch_size
    return {"seconds_per_epoch": [round(s, 3) for s in secs],
            "median_seconds_per_epoch_after_first": round(statistics.median(steady), 3),
            "median_train_images_per_s_after_first": round(trained / statistics.median(train_secs[1:] or train_secs), 1),
            "final_val_acc": h[-1]["val_acc"], "best_val_acc": h.best["val_acc"], "best_epoch": h.best["epoch"]}


def pack_correct(P: Predictions) -> str:
    "Which images `P` got right, as hex of packed bits (image i is bit i): 1,250 characters for 5,000 images."
    return np.packbits(P.preds == P.labels).tobytes().hex()


def unpack_correct(hex_bits: str, n: int) -> np.ndarray:
    "The boolean array `pack_correct` packed, for `n` images."
    return np.unpackbits(np.frombuffer(bytes.fromhex(hex_bits), np.uint8))[:n].astype(bool)


def final_scores(model, val: D.Split, device: torch.device, config: TrainConfig) -> dict:
    """The final model on the validation split without and with flip TTA: accuracies, and the images it got right
    with a digest of the split, so that two runs can be compared image by image (`compare_runs.py`)."""
    if device.type == "cuda": loader = DL.DeviceLoader(val, 1024, device=device, augment=False, channels_last=True)
    else: loader = L.eval_loader(val, 1024, num_workers=0)
    kw = dict(device=device, amp=config.amp, channels_last=config.channels_last)
    plain, flipped = (predict(model, loader, val.classes, tta=t, **kw) for t in (False, True))
    return {"final_val_acc_plain": plain.accuracy, "final_val_acc_flip_tta": flipped.accuracy,
            "val_correct": {"plain": pack_correct(plain), "flip_tta": pack_correct(flipped),
                            "val_sha1": data_signature(val, val)["sha1"]}}


def run(train: D.Split, val: D.Split, config: TrainConfig, device: torch.device, progress: bool = True) -> dict:
    "Train a fresh model with `config`; its per-epoch figures, and the final model's accuracy without and with flip TTA."
    seed_everything(config.seed)
    model = resnet18(num_classes=len(train.classes))
    t0 = time.perf_counter()
    h = fit(model, train, val, config, device=device, progress=progress)
    wall = time.perf_counter() - t0
    return {"history": h.records, "wall_seconds": round(wall, 2), **_summary(h, train, config),
            **final_scores(model, val, device, config)}


def from_run(folder: Path, train: D.Split, val: D.Split, device: torch.device,
             weights: str = "model") -> tuple[TrainConfig, dict]:
    """The figures of a finished run in `folder` (a `cifar-gradcam run --out` folder), as `run` reports them.
    `weights="train_model"` scores SGD's own weights of a run with `ema_decay` instead of the average: the run without
    EMA, since the average never feeds back into training. Its per-epoch history stays the average's (the only one
    recorded), so its final figures are the re-evaluated ones and it has no best epoch."""
    model, ckpt = load_model(folder / "last.pt", device)
    if ckpt.get("data") and ckpt["data"] != data_signature(train, val):
        raise SystemExit(f"{folder} was trained on other data than --data: give the run's data")
    config = TrainConfig.from_saved(ckpt["config"])
    h = History(list(ckpt["history"]))
    if len(h) < config.epochs: raise SystemExit(f"{folder} stopped after epoch {len(h)} of {config.epochs}: finish it with --resume")
    if weights == "train_model":
        if "train_model" not in ckpt:
            raise SystemExit(f"{folder} was trained without ema_decay: its model is SGD's weights; drop --weights train_model")
        load_weights(model, {**ckpt, "model": ckpt["train_model"]}, folder / "last.pt")
    out = {"history": h.records, "wall_seconds": round(sum(r["seconds"] for r in h.records), 2), **_summary(h, train, config),
           **final_scores(model, val, device, config), "run_folder": str(folder), "weights": weights}
    if weights == "train_model":
        out.update(final_val_acc=out["final_val_acc_plain"], best_val_acc=None, best_epoch=None,
                   history_scores="val_acc per epoch is the EMA average's, not these weights'")
    return config, out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="path of the CIFAR-10 folder/.tar.gz, or synthetic")
    p.add_argument("--device", default=None)
    p.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's (20)")
    p.add_argument("--limit", type=int, default=None, help="use at most N training images (a quick check)")
    p.add_argument("--loader", choices=["albumentations", "device"], default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="other TrainConfig settings (--set a=1 b=2, or --set a=1 --set b=2)")
    p.add_argument("--name", default="full_run")
    p.add_argument("--from-run", type=Path, default=None, metavar="DIR", help="report the finished run in DIR; train nothing")
    p.add_argument("--weights", choices=["model", "train_model"], default="model",
                   help="with --from-run and ema_decay: score the average (model, default) or SGD's own weights (train_model)")
    p.add_argument("--note", default=None, help="what else to know about the run (e.g. epochs that shared the machine)")
    args = p.parse_args()
    if args.weights != "model" and args.from_run is None: raise SystemExit("--weights scores a finished run: give --from-run DIR")
    over = parse_set(args.set)
    if args.epochs: over["epochs"] = args.epochs
    if args.loader: over["loader"] = args.loader
    if args.compile: over["compile"] = True
    config = TrainConfig(**over)
    device = get_device(args.device, verbose=False)
    # the validation split held out of the training images; a test split, if the source has one, is not touched here
    train, val, _ = D.load_cifar10(args.data)
    train = train.limit(args.limit)
    if args.from_run is not None:
        config, res = from_run(args.from_run, train, val, device, args.weights)
    else:
        print(f"{device}: {len(train)} training / {len(val)} validation images; {config}")
        res = run(train, val, config, device)
    print(f"median {res['median_seconds_per_epoch_after_first']} s/epoch after the first "
          f"({res['median_train_images_per_s_after_first']:,.0f} training images/s); final val acc "
          f"{res['final_val_acc_plain']:.2%}, with flip TTA {res['final_val_acc_flip_tta']:.2%}; wall {res['wall_seconds']} s")
    report = {"benchmark": args.name, "what": "the full training run: seconds per epoch and validation accuracy",
              "data": str(args.data), "train_images": len(train), "val_images": len(val), "device": str(device),
              "config": asdict(config), **res, **({"note": args.note} if args.note else {}), "machine": machine(),
              "versions": {**versions("torch", "torchvision", "albumentations", "numpy"), "cuda": torch.version.cuda}}
    write(args.name, report)


if __name__ == "__main__":
    main()
