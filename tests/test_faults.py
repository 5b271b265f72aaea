"""Faults a hostile but fair user meets (issue 13): nothing lost, nothing silently wrong, one clear line instead of a
traceback. CLI cases go through the real command in a subprocess: exit code 2, one line on stderr, and an earlier
run's files byte-identical afterwards."""
import copy
import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from cifar_gradcam import data as D
from cifar_gradcam import checkpoint as CK
from cifar_gradcam import train as T
from cifar_gradcam.gradcam import compute_cams
from cifar_gradcam.loaders import normalize_batch
from cifar_gradcam.model import resnet18

EXE = shutil.which("cifar-gradcam")
CLI = [EXE] if EXE else [sys.executable, "-c", "from cifar_gradcam.cli import console; console()"]
SMOKE = ["--smoke", "--data", "synthetic", "--workers", "0", "--max-lr", "0.05"]


def cli(*args, env=None, timeout=600):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def refused(r, *words):
    "Exit code 2 with one line on stderr that names every one of `words`, and no traceback."
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("cifar-gradcam: error:") and "Traceback" not in r.stderr, r.stderr
    for w in words: assert w in lines[0], (w, lines[0])
    return lines[0]


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory):
    "A resumable run stopped after epoch 1 of 2 (smoke sizes, synthetic data)."
    out = tmp_path_factory.mktemp("earlier")
    r = cli("train", *SMOKE, "--epochs", "2", "--stop-after", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


# --- data loss -------------------------------------------------------------------------------

def test_a_second_run_never_destroys_the_first(earlier_run):
    before = digests(earlier_run)
    line = refused(cli("train", *SMOKE, "--epochs", "1", "--out", earlier_run), "already holds a run", "--resume", "--overwrite")
    assert "after epoch 1 of 2" in line
    assert digests(earlier_run) == before


def test_overwrite_replaces_the_run_explicitly(tmp_path):
    out = tmp_path / "run"
    assert cli("train", *SMOKE, "--epochs", "2", "--stop-after", "1", "--out", out).returncode == 0
    r = cli("train", *SMOKE, "--epochs", "1", "--out", out, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert CK.load_checkpoint(out / "last.pt")["config"]["epochs"] == 1


# --- silently wrong results --------------------------------------------------------------------

@pytest.mark.parametrize("flag, value, name", [("--epochs", "0", "epochs=0"), ("--batch-size", "0", "batch_size=0"),
                                               ("--max-lr", "inf", "max_lr=inf"), ("--seed", "-1", "seed=-1")])
def test_bad_numbers_are_refused_before_training(tmp_path, flag, value, name):
    args = [a for a in SMOKE if a not in ("--max-lr", "0.05")] if flag == "--max-lr" else SMOKE
    r = cli("train", *args, flag, value, "--out", tmp_path / "x")
    refused(r, name)
    assert "epoch 1" not in r.stdout and not (tmp_path / "x" / "last.pt").exists()


def test_resume_refuses_other_flags_and_other_data(earlier_run):
    before = digests(earlier_run)
    refused(cli("train", *SMOKE, "--resume", "--epochs", "5", "--out", earlier_run), "--epochs 5", "the run has 2")
    refused(cli("train", *SMOKE, "--resume", "--seed", "3", "--out", earlier_run), "--seed 3")
    other = [a if a != "synthetic" else str(Path(D.__file__).parent) for a in SMOKE]   # a folder that is not the run's data
    refused(cli("train", *other, "--resume", "--out", earlier_run), "--data")
    assert digests(earlier_run) == before


def test_resume_in_the_library_checks_the_data(synthetic, tmp_path):
    train, test = synthetic[0].limit(128), synthetic[1].limit(32)
    cfg = T.TrainConfig(epochs=2, batch_size=32, max_lr=0.05, num_workers=0)
    T.fit(resnet18(), train, test, cfg, out_dir=tmp_path, stop_after=1, progress=False)
    with pytest.raises(CK.CheckpointError, match="other data.*train_images 128 vs 160"):
        T.fit(resnet18(), synthetic[0].limit(160), test, cfg, out_dir=tmp_path, resume=True, progress=False)


def test_best_checkpoint_and_report_agree_after_a_kill_between_writes(synthetic, tmp_path, monkeypatch):
    "Killed at the last checkpoint write of epoch 2 (whichever file that is), then resumed: best.pt is the best epoch."
    train, test = synthetic[0].limit(320), synthetic[1]
    cfg = T.TrainConfig(epochs=3, batch_size=32, max_lr=0.05, num_workers=0)
    real, calls = CK.save_checkpoint, []

    def dying(path, **state):
        calls.append((Path(path).name, state["epoch"]))
        if state["epoch"] == 2 and sum(e == 2 for _, e in calls) == 2:   # the second write of epoch 2
            raise KeyboardInterrupt
        return real(path, **state)

    monkeypatch.setattr(T, "save_checkpoint", dying)
    with pytest.raises(KeyboardInterrupt):
        T.fit(resnet18(), train, test, cfg, out_dir=tmp_path, progress=False)
    assert sum(e == 2 for _, e in calls) == 2, "epoch 2 must beat epoch 1 for this test to say anything"
    monkeypatch.setattr(T, "save_checkpoint", real)
    (tmp_path / ".best.pt.tmp99999").write_bytes(b"x" * 1000)        # what a SIGKILL mid-write leaves behind
    h = T.fit(resnet18(), train, test, cfg, out_dir=tmp_path, resume=True, progress=False)
    best = CK.load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == h.best["epoch"] and best["history"][-1]["val_acc"] == h.best["val_acc"]
    assert not list(tmp_path.glob(".*"))


def test_data_folders_that_would_train_the_wrong_model(tmp_path):
    def folder(name, classes, size=32, empty=()):
        root = tmp_path / name
        for c in classes:
            d = root / "train" / c
            d.mkdir(parents=True)
            if c in empty: continue
            for i in range(4):
                Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
        return root

    with pytest.raises(D.DataError, match="train/cat/ has no images"):
        D.load_cifar10(folder("empty", ("cat", "dog", "ship"), empty=("cat",)), val_size=3)
    with pytest.raises(D.DataError, match="single class"):
        D.load_cifar10(folder("one", ("cat",)), val_size=1)
    for size in (64, 28):
        train, val, _ = D.load_cifar10(folder(f"s{size}", ("cat", "dog")), val_size=2)
        assert train.x.shape[1:] == (32, 32, 3) and val.x.shape[1:] == (32, 32, 3)


def test_empty_class_folder_through_the_command(tmp_path):
    root = tmp_path / "imgs"
    for c in ("cat", "dog"):
        (root / "train" / c).mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "train" / "dog" / "0.png")
    refused(cli("train", "--data", root, "--out", tmp_path / "out", "--max-lr", "0.05"), "train/cat/ has no images")


# --- crashes and poor messages ---------------------------------------------------------------

def test_out_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("mine")
    refused(cli("train", *SMOKE, "--out", f), "is a file")
    assert f.read_text() == "mine"


@pytest.mark.parametrize("value", ["", "   "])
def test_blank_data_source(tmp_path, value):
    refused(cli("train", "--smoke", "--data", value, "--out", tmp_path / "x"), "blank")
    if value:   # an empty variable is an unset one (the torchvision default); spaces are a mistake
        refused(cli("train", "--smoke", "--out", tmp_path / "y", env={"CIFAR_GRADCAM_DATA": value}), "blank")


def _mount_tmpfs(path: Path, size: str, *options: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"): return False
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join((f"size={size}", *options)), "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    "A 4 MB tmpfs (root only; skipped elsewhere)."
    mnt = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(mnt, "4m"): pytest.skip("needs root and tmpfs to make a small disk")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_names_the_problem_and_keeps_the_previous_checkpoint(small_disk):
    model = nn.Sequential(nn.Linear(256, 256))                        # 257 KB of weights
    CK.save_checkpoint(small_disk / "last.pt", model=model.state_dict(), epoch=1)
    before = (small_disk / "last.pt").read_bytes()
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (4 * 2 ** 20 - 2 * len(before)))       # leave less room than a second copy needs
    with pytest.raises(CK.CheckpointError, match="no space left.*previous last.pt is kept"):
        CK.save_checkpoint(small_disk / "last.pt", model=nn.Sequential(nn.Linear(512, 512)).state_dict(), epoch=2)
    assert (small_disk / "last.pt").read_bytes() == before
    assert not [p for p in small_disk.iterdir() if p.name.startswith(".")]


def test_read_only_output_folder(tmp_path):
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "1m", "ro"): pytest.skip("needs root and tmpfs to make a read-only file system")
    try:
        refused(cli("train", *SMOKE, "--out", mnt / "run"), "cannot write")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_gradcam_input_errors(trained):
    model, test = trained.model, trained.test
    x, y = normalize_batch(test.x[:4]), test.y[:4]
    k = len(test.classes)
    for images, targets, words in [
        (x[:0], [], "batch is empty"),
        (x, [-1, 0, 0, 0], "out of range"),
        (x, [0, 0, 0, k], "out of range"),
        (x.clone().fill_(float("nan")), y, "NaN"),
        (torch.from_numpy(test.x[:4]).permute(0, 3, 1, 2).float() / 127.5, y, "unnormalised"),   # 0..2
    ]:
        with pytest.raises(ValueError, match=words):
            compute_cams(model, images, targets)
    frozen = copy.deepcopy(model).requires_grad_(False)
    np.testing.assert_allclose(compute_cams(frozen, x, y), compute_cams(model, x, y), atol=1e-4)
