"""What JPEG compression costs this recipe: the same short run on the data as given and re-encoded once more.

The real images on these machines are a JPEG copy of CIFAR-10 (quality 75, 4:2:0 chroma); the original files are
not here, so what that first compression cost cannot be measured directly. This measures the next best thing: train
the recipe (`TrainConfig()`, shortened by --limit/--epochs) with the same seed and the same batches on the images as
given, and on the same images (training and validation alike) re-encoded at each --quality with 4:2:0 chroma, as the
copy was made. It reports each run's final validation accuracy, and how far each re-encoding moved the pixels (PSNR
against the images as given), so the loss in accuracy can be set against the damage done.

    python benchmarks/jpeg_cost.py --data ../shared/data/cifar10-jpeg-train.tar.gz --limit 20000 --epochs 8 --quality 50
    python benchmarks/jpeg_cost.py --data synthetic --limit 640 --epochs 1 --set batch_size=32   # a CPU check

Writes benchmarks/results/jpeg_cost-<gpu or cpu>-<N>cpu.json (--name changes the first part).
"""
from __future__ import annotations

import argparse
import io
from dataclasses import asdict

import numpy as np
from PIL import Image

from _report import machine, versions, write
from cifar_gradcam import data as D
from cifar_gradcam.model import get_device
from cifar_gradcam.train import TrainConfig
from full_run import parse_set, run


def jpeg_quality(q: int) -> int:
    "`q` if it is a JPEG quality PIL can write (1-95), else a ValueError that says so."
    if not 1 <= q <= 95: raise ValueError(f"JPEG quality must be 1-95 (PIL's range); got {q}")
    return q


def reencode(split: D.Split, quality: int) -> D.Split:
    "`split` with every image saved as a JPEG at `quality` (1-95) with 4:2:0 chroma subsampling and decoded again."
    quality = jpeg_quality(quality)
    out = np.empty_like(split.x)
    for i, img in enumerate(split.x):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling=2)  # 2: 4:2:0, as the copy
        buf.seek(0)
        with Image.open(buf) as im: out[i] = np.asarray(im.convert("RGB"))
    return D.Split(out, split.y, split.classes, split.masks)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    "Peak signal-to-noise ratio (dB) between two uint8 image arrays."
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255 ** 2 / mse))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="path of the CIFAR-10 folder/.tar.gz, or synthetic")
    p.add_argument("--device", default=None)
    p.add_argument("--limit", type=int, default=20000, help="training images (default 20,000)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--quality", type=int, nargs="+", default=[50], metavar="Q",
                   help="JPEG qualities to re-encode at, 1-95 (default 50)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help="other TrainConfig settings")
    p.add_argument("--name", default="jpeg_cost")
    args = p.parse_args()
    try:
        for q in args.quality: jpeg_quality(q)   # before an hour of training, not after the first run
    except ValueError as e:
        p.error(f"--quality: {e}")
    config = TrainConfig(**{**parse_set(args.set), "epochs": args.epochs})
    device = get_device(args.device, verbose=False)
    if args.data == "synthetic": train, val = D.make_synthetic(n_train=args.limit, n_test=1000, seed=0)
    else: train, val, _ = D.load_cifar10(args.data)
    train = train.limit(args.limit)
    runs = []
    for q in [None, *args.quality]:
        tr, va = (train, val) if q is None else (reencode(train, q), reencode(val, q))
        what = "as given" if q is None else f"re-encoded at quality {q}"
        print(f"{what}: {len(tr)} training / {len(va)} validation images; {config}")
        res = run(tr, va, config, device)
        runs.append({"quality": q, "psnr_db_vs_given": None if q is None else round(psnr(train.x, tr.x), 2),
                     "final_val_acc": res["final_val_acc_plain"], "final_val_acc_flip_tta": res["final_val_acc_flip_tta"],
                     "val_acc_per_epoch": [r["val_acc"] for r in res["history"]],
                     "train_acc_last_epoch": res["history"][-1]["train_acc"],
                     "median_seconds_per_epoch_after_first": res["median_seconds_per_epoch_after_first"]})
        print(f"{what}: final val acc {runs[-1]['final_val_acc']:.2%}"
              + ("" if q is None else f" (PSNR {runs[-1]['psnr_db_vs_given']} dB against the images as given)"))
    report = {"benchmark": args.name, "what": "validation accuracy of the same short run on the images as given and re-encoded",
              "data": str(args.data), "train_images": len(train), "val_images": len(val), "device": str(device),
              "config": asdict(config), "runs": runs, "machine": machine(),
              "versions": versions("torch", "torchvision", "albumentations", "numpy", "pillow")}
    write(args.name, report)


if __name__ == "__main__":
    main()
