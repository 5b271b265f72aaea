"""Training-loader throughput: this kit's pipeline against the course repos' pattern, in one run.

Both sides produce the same thing (shuffled, augmented, normalised float32 batches of CIFAR images:
pad 4 + crop, flip, 16x16 cutout, normalise) with the same DataLoader settings; they differ only
in how a batch is made:

- baseline (what the course repos do): a torchvision-style dataset that turns each stored array into
  a PIL image (as `torchvision.datasets.CIFAR10.__getitem__` does), back into a numpy array, runs the
  whole albumentations pipeline (augment, Normalize, ToTensorV2) on it, and lets `default_collate`
  stack the per-image tensors;
- this kit: `cifar_gradcam.loaders.make_loaders`: per-image augmentation on uint8 arrays, then one
  vectorised normalisation per batch (`CifarDataset.__getitems__`).

    python benchmarks/bench_data.py [--images 20000] [--workers 0 2] [--data synthetic|PATH]

Writes benchmarks/results/bench_data-<host>.json. Ratios are what count: absolute images/s depend
on the machine, and these machines are noisy, so the two sides alternate, repeated, and the best
round of each is kept.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from _report import RESULTS, machine, versions, write
from cifar_gradcam import data as D
from cifar_gradcam import loaders as L


class CourseRepoDataset(Dataset):
    "The common pattern: array -> PIL -> numpy -> albumentations (incl. Normalize, ToTensorV2) per image."
    def __init__(self, split: D.Split, transform: A.Compose):
        self.x, self.y, self.transform = split.x, split.y, transform

    def __len__(self): return len(self.x)

    def __getitem__(self, i):
        img = Image.fromarray(self.x[i])                  # torchvision's CIFAR10 hands out PIL images
        return self.transform(image=np.array(img))["image"], int(self.y[i])


def _seed_baseline_worker(_):
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(torch.initial_seed() % 2 ** 32)


def baseline_loader(split, batch_size, workers):
    return DataLoader(CourseRepoDataset(split, L.train_transforms(seed=0)), batch_size=batch_size, shuffle=True,
                      drop_last=True, num_workers=workers, persistent_workers=workers > 0,
                      worker_init_fn=_seed_baseline_worker if workers else None,
                      generator=torch.Generator().manual_seed(0))


def kit_loader(split, batch_size, workers):
    return L.make_loaders(split, split, batch_size=batch_size, num_workers=workers, seed=0, pin_memory=False)[0]


def images_per_second(loader, epochs: int = 1) -> float:
    it = iter(loader)
    next(it)  # start the workers and warm up outside the clock
    n, t0 = 0, time.perf_counter()
    for x, _ in it:
        n += len(x)
    for _ in range(epochs - 1):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000, help="training images per pass")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--workers", type=int, nargs="+", default=[0, min(2, os.cpu_count() or 1)])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data", default="synthetic", help="synthetic, or a CIFAR folder/.tar.gz")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    if a.data == "synthetic":
        split, _ = D.make_synthetic(n_train=a.images, n_test=1)
    else:
        split = D.load_cifar10(a.data)[0].limit(a.images)
    torch.set_num_threads(1)
    results = []
    for w in a.workers:
        best = {"baseline": 0.0, "kit": 0.0}
        for _ in range(a.rounds):  # alternate, so drifts in machine speed hit both sides alike
            best["baseline"] = max(best["baseline"], images_per_second(baseline_loader(split, a.batch_size, w)))
            best["kit"] = max(best["kit"], images_per_second(kit_loader(split, a.batch_size, w)))
        r = {"num_workers": w, "baseline_images_per_s": round(best["baseline"], 1),
             "kit_images_per_s": round(best["kit"], 1), "speedup": round(best["kit"] / best["baseline"], 3)}
        print(f"workers={w}: course-repo pattern {r['baseline_images_per_s']:.0f} img/s, "
              f"cifar_gradcam {r['kit_images_per_s']:.0f} img/s, ratio {r['speedup']:.2f}x")
        results.append(r)

    write("bench_data", {
        "benchmark": "bench_data", "what": "training-loader images/s, augmentation included",
        "images": len(split), "batch_size": a.batch_size, "rounds": a.rounds, "data": a.data,
        "machine": machine(), "versions": versions("torch", "torchvision", "albumentations", "numpy"),
        "results": results,
    }, a.out)


if __name__ == "__main__":
    main()
