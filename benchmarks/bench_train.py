"""Training speed on this machine's best device, piece by piece and end to end, with a baseline for each.

1. loader alone: training images/s delivered as normalised batches *on the device*, augmentation included.
   Baseline: the albumentations `DataLoader` of `make_loaders` (the lessons' default) with `--workers`
   (default: `default_num_workers()`); against it: `DeviceLoader` (whole batches augmented on the device).
2. model step alone: images/s of `train_step` (forward, loss, backward, SGD update) on a batch already on
   the device. Baseline: float32 NCHW; against it: channels_last, AMP (bfloat16 autocast; float16 on a GPU
   without native bfloat16), both, both plus `torch.compile` (on by default on CUDA, `--compile` elsewhere),
   and "default": what `precision(device)` picks for this machine, the project's default path.
3. end to end: `fit` for `--epochs` epochs on `--images` training images with each loader, in `fit`'s defaults
   for this device (precision, loader workers, threads); training images/s of the last epoch (the first pays
   for cudnn's autotuning and compiling) and seconds per epoch including the evaluation. Reported against the
   default step alone (the goal: within 10%) and against the float32 NCHW step.

    python benchmarks/bench_train.py [--data synthetic|PATH] [--batch-size N] [--compile | --no-compile]

Writes benchmarks/results/bench_train-<gpu, or cpu and its model>-<N>cpu.json. Every part runs at the recipe's
batch of 512 by default; on a CPU with few steps and images (a 2-core CPU trains 80 to 200 images/s), on a GPU
the whole training set. Run it on a quiet machine: with two OpenMP threads, one busy core stalls every step. The sides alternate over `--rounds` rounds and the best round of each
is kept, because shared machines are noisy.
"""
from __future__ import annotations

import argparse
import time
from contextlib import contextmanager

import torch
import torch.nn as nn

from _report import machine, versions, write
from cifar_gradcam import data as D
from cifar_gradcam import device_loader as DL
from cifar_gradcam import loaders as L
from cifar_gradcam.optim import make_optimizer
from cifar_gradcam.model import Precision, get_device, precision, resnet18
from cifar_gradcam.train import TrainConfig, fit, loader_workers, seed_everything, train_step


def sync(device: torch.device) -> None:
    if device.type == "cuda": torch.cuda.synchronize(device)


@contextmanager
def timer(device: torch.device, out: list):
    sync(device); t0 = time.perf_counter()
    yield
    sync(device); out.append(time.perf_counter() - t0)


def load(args) -> tuple[D.Split, D.Split]:
    "Training images enough for both the loader and the end-to-end parts (each takes its own `limit`)."
    n = max(args.images, args.loader_images)
    if args.data == "synthetic":
        return D.make_synthetic(n_train=n, n_test=args.test_images, seed=0)
    train, test, _ = D.load_cifar10(args.data)   # the validation split: no test images are scored here
    return train.limit(n), test.limit(args.test_images)


# ---------------------------------------------------------------- 1. loader alone
def loader_images_per_s(make, device: torch.device, batches: int, skip: int) -> float:
    """Images/s of `batches` batches of a fresh epoch, each moved to the device (as `fit` does), after
    `skip` untimed ones: workers all start together, so the first batches arrive nearly at once and would
    flatter a loader with many workers."""
    loader = make()
    it = iter(loader)
    for _ in range(skip): next(it)
    n, times = 0, []
    with timer(device, times):
        for _ in range(batches):
            x, y = next(it)
            x = x.to(device, non_blocking=True); y = y.to(device, non_blocking=True)
            n += len(y)
    return n / times[0]


def bench_loaders(train: D.Split, device: torch.device, args) -> dict:
    bs = args.loader_batch_size
    train = train.limit(args.loader_images)
    workers = L.default_num_workers() if args.workers is None else args.workers   # the loader alone may use every core
    skip = {"albumentations_dataloader": 2 * workers + 1, "device_loader": 1}
    batches = min(args.loader_batches, len(train) // bs - max(skip.values()))
    if batches < 1: raise SystemExit(f"--loader-images {len(train)} gives no full batches of {bs} to time")
    sides = {
        "albumentations_dataloader": lambda: L.make_loaders(train, train.limit(10), bs, num_workers=workers)[0],
        "device_loader": lambda: DL.DeviceLoader(train, bs, device=device,
                                                channels_last=precision(device).channels_last),
    }
    best = {k: 0.0 for k in sides}
    for _ in range(args.rounds):
        for k, make in sides.items():
            best[k] = max(best[k], loader_images_per_s(make, device, batches, skip[k]))
    base = best["albumentations_dataloader"]
    return {"batch_size": bs, "images": len(train), "batches": batches, "untimed_first_batches": skip,
            "num_workers": workers,
            "images_per_s": {k: round(v, 1) for k, v in best.items()},
            "speedup_vs_albumentations": round(best["device_loader"] / base, 3)}


# ---------------------------------------------------------------- 2. model step alone
def step_variants(device: torch.device, compile_: bool) -> dict[str, dict]:
    """The step settings to compare. AMP is `precision(device, amp=True)`'s format: bfloat16, or float16 + loss
    scaling on a GPU without native bfloat16. "default" is what `fit` uses here when nothing is forced."""
    amp = precision(device, amp=True).dtype
    v = {"fp32": dict(prec=Precision(device, None, False), compile=False),
         "channels_last": dict(prec=Precision(device, None, True), compile=False),
         "amp": dict(prec=Precision(device, amp, False), compile=False),
         "amp+channels_last": dict(prec=Precision(device, amp, True), compile=False),
         "default": dict(prec=precision(device), compile=False)}
    if compile_: v["amp+channels_last+compile"] = dict(prec=Precision(device, amp, True), compile=True)
    return v


def bench_steps(device: torch.device, args) -> dict:
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(args.batch_size, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    setups = {}
    for name, v in step_variants(device, args.compile).items():
        prec = v["prec"]
        model = prec.prepare(resnet18())
        net = torch.compile(model) if v["compile"] else model
        opt = make_optimizer(model, lr=0.05)
        scaler = prec.grad_scaler()
        x = prec.inputs(x0)
        t = []
        with timer(device, t):  # warm-up: cudnn autotuning, compiling
            for _ in range(args.warmup + (5 if v["compile"] else 0)):
                train_step(net, x, y, criterion, opt, scaler, prec)
        setups[name] = dict(net=net, opt=opt, scaler=scaler, x=x, prec=prec, warmup_s=t[0], best=0.0)
    for _ in range(args.rounds):
        for name, s in setups.items():
            t = []
            with timer(device, t):
                for _ in range(args.steps):
                    train_step(s["net"], s["x"], y, criterion, s["opt"], s["scaler"], s["prec"])
            s["best"] = max(s["best"], args.steps * args.batch_size / t[0])
    base = setups["fp32"]["best"]
    return {"steps": args.steps, "warmup_steps": args.warmup,
            "amp_dtype": str(setups["amp"]["prec"].dtype), "default": str(setups["default"]["prec"]),
            "images_per_s": {k: round(s["best"], 1) for k, s in setups.items()},
            "speedup_vs_fp32": {k: round(s["best"] / base, 3) for k, s in setups.items()},
            "warmup_seconds": {k: round(s["warmup_s"], 2) for k, s in setups.items()}}


# ---------------------------------------------------------------- 3. end to end
def bench_end_to_end(train: D.Split, test: D.Split, device: torch.device, args, step: dict | None = None) -> dict:
    """`fit` in its defaults for this device, with each loader. With `step` (part 2's result), the ratios of its
    training images/s to the default step alone and to the float32 NCHW step."""
    train, out = train.limit(args.images), {}
    for loader in ("albumentations", "device"):
        seed_everything(0)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, max_lr=0.1, loader=loader,
                          num_workers=args.workers, compile=args.compile and device.type == "cuda")
        h = fit(resnet18(), train, test, cfg, device=device, progress=False)
        trained = (len(train) // args.batch_size) * args.batch_size
        last = h[-1]
        out[loader] = {"train_images_per_s": round(trained / last["train_seconds"], 1),
                       "seconds_per_epoch": round(last["seconds"], 3),
                       "train_seconds_per_epoch": round(last["train_seconds"], 3),
                       "first_epoch_seconds": round(h[0]["seconds"], 3),
                       "val_acc_last_epoch": round(last["val_acc"], 4)}
    out["speedup_device_vs_albumentations"] = round(
        out["device"]["train_images_per_s"] / out["albumentations"]["train_images_per_s"], 3)
    if step is not None:
        for loader in ("albumentations", "device"):
            e2e = out[loader]["train_images_per_s"]
            out[loader]["vs_default_step_alone"] = round(e2e / step["images_per_s"]["default"], 3)
            out[loader]["vs_fp32_nchw_step"] = round(e2e / step["images_per_s"]["fp32"], 3)
    out["config"] = {"epochs": args.epochs, "batch_size": args.batch_size, "images": len(train),
                     "test_images": len(test), "precision": str(precision(device)),
                     "albumentations_workers": loader_workers(device, args.workers), "torch_threads": torch.get_num_threads(),
                     "compile": args.compile and device.type == "cuda"}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic", help="synthetic (default) or the path of a CIFAR-10 folder/.tar.gz")
    p.add_argument("--device", default=None, help="default: the best available")
    p.add_argument("--batch-size", type=int, default=512, help="default 512, the recipe's")
    p.add_argument("--images", type=int, default=None, help="training images (default 45,000 on a GPU, 5,120 on a CPU)")
    p.add_argument("--test-images", type=int, default=None, help="default 5,000 on a GPU, 512 on a CPU")
    p.add_argument("--workers", type=int, default=None,
                   help="albumentations loader workers (default: `loader_workers`: none on a CPU, one per core with a GPU)")
    p.add_argument("--loader-batches", type=int, default=None, help="batches timed per loader round")
    p.add_argument("--loader-batch-size", type=int, default=512, help="batch size of the loader part (default 512)")
    p.add_argument("--loader-images", type=int, default=None, help="images for the loader part (default 45,000 GPU, 20,000 CPU)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per model-step round")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps before timing each step variant")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds; the best of each side is kept")
    p.add_argument("--epochs", type=int, default=None, help="end-to-end epochs per loader (default 3 GPU, 2 CPU)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="include torch.compile (default: on CUDA only; compiling on a small CPU takes minutes)")
    p.add_argument("--only", nargs="+", choices=["loader", "step", "end_to_end"], default=None)
    args = p.parse_args()
    device = get_device(args.device, verbose=False)
    gpu = device.type == "cuda"
    defaults = dict(images=45_000 if gpu else 5_120, loader_images=45_000 if gpu else 20_000, test_images=5_000 if gpu else 512,
                    loader_batches=60 if gpu else 20, steps=30 if gpu else 3, warmup=5 if gpu else 1,
                    rounds=3 if gpu else 2, epochs=3 if gpu else 2, compile=gpu)
    for k, v in defaults.items():
        if getattr(args, k) is None: setattr(args, k, v)
    parts = args.only or ["loader", "step", "end_to_end"]
    if gpu: torch.backends.cudnn.benchmark = True  # as fit sets it: every part runs autotuned convolutions
    train, test = load(args)
    print(f"{device}: {len(train)} training / {len(test)} test images, batch {args.batch_size}")
    report = {"benchmark": "bench_train", "what": "training images/s: loader alone, model step alone, end to end",
              "device": str(device), "data": str(args.data), "batch_size": args.batch_size,
              "rounds": args.rounds, "machine": machine(),
              "versions": {**versions("torch", "torchvision", "albumentations", "numpy"),
                           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if gpu else None}}
    if "loader" in parts:
        report["loader"] = bench_loaders(train, device, args); print("loader:", report["loader"])
    if "step" in parts:
        report["step"] = bench_steps(device, args); print("step:", report["step"])
    if "end_to_end" in parts:
        report["end_to_end"] = bench_end_to_end(train, test, device, args, report.get("step"))
        print("end to end:", report["end_to_end"])
    write("bench_train", report)


if __name__ == "__main__":
    main()
