"""Grad-CAM throughput: CAMs for many images in batches against one image at a time, in one run.

The course repos compute Grad-CAM in a Python loop, one image per call, building a new `GradCAM`
object (and its hooks) for each. This kit's `compute_cams` builds it once and runs whole batches:
one forward and one backward pass per batch. Both sides produce the same maps (checked here).

    python benchmarks/bench_gradcam.py [--images 1000] [--batch-size 128] [--layer layer4]

Writes benchmarks/results/bench_gradcam-<machine>.json with the ratio. A ResNet-18 with random
weights is enough: the cost does not depend on what the weights are.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from _report import RESULTS, machine, versions, write
from cifar_gradcam import data as D
from cifar_gradcam import loaders as L
from cifar_gradcam.gradcam import compute_cams
from cifar_gradcam.model import get_device, gradcam_layer, resnet18


def one_at_a_time(model, x, targets, layer):
    "The course-repo pattern: a new GradCAM per image, one image per call."
    out = []
    for xi, t in zip(x, targets):
        with GradCAM(model=model, target_layers=[gradcam_layer(model, layer)]) as cam:
            out.append(cam(input_tensor=xi[None].to(next(model.parameters()).device),
                           targets=[ClassifierOutputTarget(int(t))])[0])
    return np.stack(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--layer", default="layer4")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)

    device = get_device(a.device)
    torch.manual_seed(0)
    model = resnet18().to(device).eval()
    split, _ = D.make_synthetic(n_train=a.images, n_test=1)
    x, targets = L.normalize_batch(split.x), split.y

    compute_cams(model, x[:a.batch_size], targets[:a.batch_size], a.layer, batch_size=a.batch_size)  # warm-up
    t0 = time.perf_counter()
    batched = compute_cams(model, x, targets, a.layer, batch_size=a.batch_size)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = one_at_a_time(model, x, targets, a.layer)
    t_single = time.perf_counter() - t0
    max_diff = float(np.abs(batched - single).max())
    print(f"{a.images} CAMs at {a.layer} on {device}: one at a time {t_single:.1f} s ({a.images / t_single:.0f}/s), "
          f"batched by {a.batch_size} {t_batched:.1f} s ({a.images / t_batched:.0f}/s): {t_single / t_batched:.1f}x faster; "
          f"largest difference between the maps {max_diff:.1e}")

    write("bench_gradcam", {
        "benchmark": "bench_gradcam", "what": "Grad-CAM maps per second, batched vs one image per call",
        "images": a.images, "batch_size": a.batch_size, "layer": a.layer, "device": str(device),
        "machine": machine(), "versions": versions("torch", "grad-cam"),
        "one_at_a_time_seconds": round(t_single, 3), "batched_seconds": round(t_batched, 3),
        "speedup": round(t_single / t_batched, 3), "max_abs_difference": max_diff,
    }, a.out)


if __name__ == "__main__":
    main()
