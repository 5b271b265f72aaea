"""Tune the 20-epoch recipe on the validation split: one setting at a time around `TrainConfig()`.

Each candidate is a full run (`full_run.run`) from the same seed, changing one setting of the default
recipe (a candidate may name two settings that belong together, such as a batch size and its scaled peak); the
table ranks them by final validation accuracy without TTA (last epoch, no checkpoint picking; flip TTA beside it).
Needs a GPU: a run there takes about a minute, on the 2-core CPUs here 80-110 minutes.

    python benchmarks/tune_recipe.py --data ../shared/data/cifar10-jpeg-train.tar.gz --loader device --compile
    python benchmarks/tune_recipe.py ... --only max_lr=0.2 label_smoothing=0.2 "batch_size=512 max_lr=0.4"   # some candidates
    python benchmarks/tune_recipe.py ... --seeds 0 1                            # repeat for the noise level

The JSON (benchmarks/results/tune_recipe-<gpu>-<N>cpu.json) is rewritten after every run, so a run cut
short keeps what it finished. Only the validation split is used: the 5,000 training images that
`load_cifar10` holds out of an archive without test/ (the shared training set), or with --holdout 5,000
held out here (for sources with a test split of their own). It is what we tune on *and* what we report,
so differences smaller than the seed-to-seed spread (see --seeds) are not real.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import torch

from _report import machine, versions, write
from full_run import parse_set, run
from cifar_gradcam import data as D
from cifar_gradcam.model import get_device
from cifar_gradcam.train import TrainConfig

# one change at a time from TrainConfig() (batch 128, max_lr 0.1); a batch size comes with its peak scaled in
# proportion (the linear scaling rule). The baseline (no change) runs first.
CANDIDATES = ["max_lr=0.05", "max_lr=0.2", "batch_size=256 max_lr=0.2", "batch_size=512 max_lr=0.4",
              "weight_decay=0.00025", "weight_decay=0.001", "label_smoothing=0", "label_smoothing=0.2",
              "pct_start=0.15", "pct_start=0.35", "cutout_p=0", "cutout_p=1.0", "cutout=8", "ema_decay=0.999"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--loader", choices=["albumentations", "device"], default="device")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--only", nargs="*", default=None, metavar="KEY=VALUE",
                   help="candidates to run (default: all); quote one of two settings: \"batch_size=512 max_lr=0.4\"")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's (20)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="change the base recipe too (--set a=1 b=2, or --set a=1 --set b=2)")
    p.add_argument("--limit", type=int, default=None, help="use at most N training images (a quick check)")
    p.add_argument("--holdout", action="store_true",
                   help="tune on 5,000 images held out of the training split; needed when --data has a test split "
                        "of its own (torchvision, a folder with test/), so that the test set stays unseen")
    args = p.parse_args()
    device = get_device(args.device, verbose=False)
    if args.data == "torchvision" and not args.holdout:
        raise SystemExit("--data torchvision brings the real test set: add --holdout to tune on a validation split")
    train, val, _ = D.load_cifar10(args.data)
    if args.holdout: train, val = D.train_val_split(train, 5000 if len(train) > 10_000 else None)  # else 10%
    print(f"tuning on {len(val)} validation images, training on {len(train)}")
    train = train.limit(args.limit)
    base = {"loader": args.loader, "compile": args.compile, **({"epochs": args.epochs} if args.epochs else {}),
            **parse_set(args.set)}
    todo = ["(default)"] + (args.only if args.only is not None else CANDIDATES)
    report = {"benchmark": "tune_recipe", "what": "one-setting-at-a-time changes to TrainConfig(), final val accuracy",
              "data": args.data, "train_images": len(train), "val_images": len(val), "base": asdict(TrainConfig(**base)), "runs": [], "machine": machine(),
              "versions": {**versions("torch", "torchvision", "albumentations", "numpy"), "cuda": torch.version.cuda}}
    for seed in args.seeds:
        for cand in todo:
            change = {} if cand == "(default)" else parse_set(cand.split())
            cfg = TrainConfig(**{**base, **change, "seed": seed})
            print(f"== {cand} (seed {seed})", flush=True)
            res = run(train, val, cfg, device, progress=False)
            report["runs"].append({"change": cand, "seed": seed, **{k: res[k] for k in (
                "final_val_acc_plain", "final_val_acc_flip_tta", "best_val_acc", "best_epoch",
                "median_seconds_per_epoch_after_first", "wall_seconds")}})
            report["ranking"] = sorted(report["runs"], key=lambda r: -r["final_val_acc_plain"])  # the goal has no TTA
            print(json.dumps(report["runs"][-1]), flush=True)
            write("tune_recipe", report)


if __name__ == "__main__":
    main()
