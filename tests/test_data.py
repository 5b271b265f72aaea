"""cifar_gradcam.data and cifar_gradcam.loaders: every source, the published statistics, augmentation, loaders, bad input."""
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_gradcam import data as D
from cifar_gradcam import loaders as L

SHARED_TAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"
needs_shared = pytest.mark.skipif(not SHARED_TAR.exists(), reason=f"real CIFAR-10 not at {SHARED_TAR}")


def write_folder(root: Path, classes=("cat", "dog", "ship"), n_train=6, n_test=2, size=32, seed=0) -> Path:
    "A tiny ImageFolder tree of random PNG images."
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c in classes:
            if n == 0: continue
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


def make_tar(folder: Path, dest: Path, arcname: str = ".") -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname=arcname)
    return dest


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_GRADCAM_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def check_split(s: D.Split, n: int, classes):
    assert len(s) == n and s.x.shape == (n, 32, 32, 3) and s.x.dtype == np.uint8
    assert s.y.dtype == np.int64 and s.y.min() >= 0 and s.y.max() < len(classes)
    assert s.classes == tuple(classes)


# --- sources ---------------------------------------------------------------------------------

def test_image_folder_with_test_split(tmp_path, cache):
    root = write_folder(tmp_path / "imgs")
    train, val, test = D.load_cifar10(root, val_size=3)
    check_split(train, 15, ("cat", "dog", "ship")); check_split(val, 3, ("cat", "dog", "ship"))
    check_split(test, 6, ("cat", "dog", "ship"))
    assert train.class_counts() == {"cat": 5, "dog": 5, "ship": 5} and val.class_counts() == {"cat": 1, "dog": 1, "ship": 1}
    # pixels come through exactly (PNG is lossless)
    assert np.array_equal(train.x[0], np.asarray(Image.open(root / "train/cat/000.png")))


def test_tar_gz_without_test_gets_stratified_val_split(tmp_path, cache):
    root = write_folder(tmp_path / "imgs", n_train=20, n_test=0)
    tar = make_tar(root, tmp_path / "imgs.tar.gz", arcname="cifar")  # one folder around train/ is fine
    train, val, test = D.load_cifar10(tar, val_size=15)
    assert test is None
    check_split(train, 45, ("cat", "dog", "ship")); check_split(val, 15, ("cat", "dog", "ship"))
    assert val.class_counts() == {"cat": 5, "dog": 5, "ship": 5}
    # fixed: loading again (now from the cache) gives the same split
    train2, val2, _ = D.load_cifar10(tar, val_size=15)
    assert np.array_equal(val.x, val2.x) and np.array_equal(train.y, train2.y)
    assert list(cache.glob("imagefolder-*.npz"))


def _keys(split):
    return {x.tobytes() for x in split.x}


@pytest.mark.parametrize("kind", ["folder with test/", "tar without test/", "synthetic"])
def test_validation_images_are_never_training_images(tmp_path, cache, kind):
    "Every source holds its validation split out of its training images: none is in both, and none is lost."
    if kind == "synthetic":
        train, val, test = D.load_cifar10("synthetic")
        assert len(train) + len(val) == 5000 and test is not None
    else:
        root = write_folder(tmp_path / "imgs", n_train=20, n_test=4 if kind.startswith("folder") else 0)
        src = root if kind.startswith("folder") else make_tar(root, tmp_path / "imgs.tar.gz")
        train, val, test = D.load_cifar10(src, val_size=6)
        assert (test is None) == kind.startswith("tar") and len(train) == 54 and len(val) == 6
        everything = {np.asarray(Image.open(p).convert("RGB")).tobytes() for p in (root / "train").rglob("*.png")}
        assert _keys(train) | _keys(val) == everything
        if test is not None: assert not _keys(test) & everything
    assert not _keys(train) & _keys(val)


def test_env_variable_selects_source(monkeypatch):
    monkeypatch.setenv("CIFAR_GRADCAM_DATA", "synthetic")
    train, val, test = D.load_cifar10()
    assert train.classes == D.SYNTHETIC_CLASSES and train.masks is not None


def test_synthetic_masks_mark_the_pattern():
    train, test = D.make_synthetic(n_train=200, n_test=50, seed=1)
    check_split(train, 200, D.SYNTHETIC_CLASSES); check_split(test, 50, D.SYNTHETIC_CLASSES)
    assert train.masks.shape == (200, 32, 32) and (train.masks.sum((1, 2)) == 12 * 12).all()
    # the class colour lives inside the mask, not outside it
    k = 0
    colour = D._PALETTE[train.y[k]]
    inside = train.x[k][train.masks[k]].astype(float)
    outside = train.x[k][~train.masks[k]].astype(float)
    assert np.abs(inside - colour).sum(1).min() < np.abs(outside - colour).sum(1).min()


def test_torchvision_offline_names_the_alternatives(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    def offline(*a, **k): raise OSError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(tvd, "CIFAR10", offline)
    with pytest.raises(D.DataError, match=r"(?s)Could not download.*tar\.gz.*synthetic"):
        D.load_cifar10("torchvision", cache_dir=tmp_path)


@needs_shared
def test_real_cifar10_training_set(cache):
    train, val, test = D.load_cifar10(SHARED_TAR)
    assert test is None
    check_split(train, 45000, D.CIFAR10_CLASSES); check_split(val, 5000, D.CIFAR10_CLASSES)
    assert set(val.class_counts().values()) == {500}
    x = np.concatenate([train.x, val.x])
    mean, std = D.channel_stats(x)
    np.testing.assert_allclose(mean, D.CIFAR10_MEAN, atol=0.01)
    np.testing.assert_allclose(std, D.CIFAR10_STD, atol=0.01)


# --- augmentation and loaders ----------------------------------------------------------------

def test_augmentation_keeps_shape_and_changes_pixels():
    train, _ = D.make_synthetic(64, 10)
    tfm = L.train_transforms(seed=0)
    outs = torch.stack([tfm(image=train.x[0])["image"] for _ in range(20)])
    assert outs.shape == (20, 3, 32, 32) and outs.dtype == torch.float32
    plain = L.test_transforms()(image=train.x[0])["image"]
    assert sum(not torch.allclose(o, plain) for o in outs) >= 15


def test_cutout_fills_with_mean_which_normalises_to_zero():
    img = np.full((32, 32, 3), 255, np.uint8)
    tfm = L.train_transforms(L.AugSpec(pad=0, flip_p=0, cutout_p=1.0), seed=0)
    out = tfm(image=img)["image"]
    hole = (out.abs() < 0.02).all(0)
    assert hole.sum() == 16 * 16


def test_batched_dataset_equals_per_image_pipeline():
    train, _ = D.make_synthetic(16, 4)
    xb, yb = L.CifarDataset(train, L.augmentations(seed=7)).__getitems__(list(range(16)))
    ref = L.train_transforms(seed=7)
    torch.testing.assert_close(xb, torch.stack([ref(image=i)["image"] for i in train.x]), atol=1e-5, rtol=0)
    assert torch.equal(yb, torch.from_numpy(train.y))
    x1, y1 = L.CifarDataset(train)[3]
    torch.testing.assert_close(x1, L.test_transforms()(image=train.x[3])["image"], atol=1e-5, rtol=0)
    assert y1 == train.y[3]


def first_batches(train, test, seed, workers, n=2, epoch=None):
    tl, _ = L.make_loaders(train, test, batch_size=64, seed=seed, num_workers=workers)
    if epoch is not None: tl.batch_sampler.set_epoch(epoch)
    return [b for b, _ in zip(tl, range(n))]


def test_loaders_are_seeded_and_independent_of_workers():
    train, test = D.make_synthetic(300, 50)
    a, b, c = first_batches(train, test, 1, 0), first_batches(train, test, 1, 2), first_batches(train, test, 2, 2)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a[0][0], c[0][0])
    tl, vl = L.make_loaders(train, test, batch_size=64, num_workers=0)
    assert len(tl) == 300 // 64  # full batches only
    assert sum(len(y) for _, y in vl) == 50  # every test image, once


def test_epochs_differ_and_set_epoch_resumes_exactly():
    train, test = D.make_synthetic(300, 50)
    tl, _ = L.make_loaders(train, test, batch_size=64, seed=3, num_workers=0)
    epoch0 = [x for x, _ in tl]
    epoch1 = [x for x, _ in tl]
    assert not torch.equal(epoch0[0], epoch1[0])  # a new shuffle and new augmentations each epoch
    resumed = first_batches(train, test, 3, 2, n=len(epoch1), epoch=1)  # a fresh loader, as after a restart
    for a, (b, _) in zip(epoch1, resumed):
        assert torch.equal(a, b)


def test_denormalize_inverts_normalisation():
    train, _ = D.make_synthetic(4, 4)
    t = L.test_transforms()(image=train.x[0])["image"]
    np.testing.assert_allclose(D.denormalize(t), train.x[0] / 255, atol=1e-5)


def test_split_limit_is_stratified():
    train, _ = D.make_synthetic(1000, 10)
    small = train.limit(100)
    assert len(small) == 100 and set(small.class_counts().values()) == {10}


# --- bad input -------------------------------------------------------------------------------

def test_missing_source(tmp_path):
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_cifar10(tmp_path / "nowhere")


def test_unknown_source_name():
    with pytest.raises(D.DataError, match=r"Unknown data source 'cifar100'.*torchvision.*synthetic"):
        D.load_cifar10("cifar100")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DataError, match="is empty"):
        D.load_cifar10(tmp_path / "empty")


def test_wrong_layout_images_without_class_folders(tmp_path):
    d = tmp_path / "flat" / "train"; d.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "a.png")
    with pytest.raises(D.DataError, match=r"directly in train/.*class folder"):
        D.load_cifar10(tmp_path / "flat")


def test_wrong_layout_no_train_folder(tmp_path):
    d = tmp_path / "x" / "cat"; d.mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(d / "a.png")
    with pytest.raises(D.DataError, match=r"no images in train/<class>/"):
        D.load_cifar10(tmp_path / "x")


@pytest.mark.parametrize("as_tar", [False, True])
def test_corrupt_image_is_named(tmp_path, cache, as_tar):
    root = write_folder(tmp_path / "imgs")
    (root / "train" / "dog" / "001.png").write_bytes(b"this is not a png")
    src = make_tar(root, tmp_path / "c.tar.gz") if as_tar else root
    with pytest.raises(D.DataError, match=r"cannot read image train/dog/001\.png"):
        D.load_cifar10(src)
    assert not list(cache.glob("*.npz"))  # nothing half-loaded is cached


def test_class_folders_differ_between_train_and_test(tmp_path):
    root = write_folder(tmp_path / "imgs")
    (root / "test" / "ship").rename(root / "test" / "boat")
    with pytest.raises(D.DataError, match=r"only in train: \['ship'\]; only in test: \['boat'\]"):
        D.load_cifar10(root)


def test_images_of_different_sizes(tmp_path):
    root = write_folder(tmp_path / "imgs")
    Image.fromarray(np.zeros((64, 48, 3), np.uint8)).save(root / "train" / "cat" / "big.png")
    with pytest.raises(D.DataError, match=r"differ in size.*big\.png is 48x64"):
        D.load_cifar10(root)


def test_damaged_archive(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08 definitely not gzip")
    with pytest.raises(D.DataError, match="not a readable .tar.gz"):
        D.load_cifar10(bad)


def test_bad_split_and_loader_arguments():
    train, test = D.make_synthetic(20, 5)
    with pytest.raises(D.DataError, match="val_size"):
        D.train_val_split(train, 20)
    with pytest.raises(D.DataError, match="batch_size"):
        L.make_loaders(train, test, batch_size=0)
    with pytest.raises(D.DataError, match="uint8"):
        D.Split(np.zeros((2, 32, 32, 3), np.float32), np.zeros(2), ("a",))
    with pytest.raises(D.DataError, match="labels must lie"):
        D.Split(np.zeros((2, 32, 32, 3), np.uint8), np.array([0, 3]), ("a", "b"))


def test_jpeg_cost_reencodes_as_the_copy_was_made(synthetic, monkeypatch):
    """benchmarks/jpeg_cost.py re-encodes images as the JPEG copy of CIFAR-10 was made (4:2:0 chroma): labels and classes
    kept, images changed, and more damage (lower PSNR) at a lower quality; a quality PIL cannot write is refused."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import jpeg_cost
    split = synthetic[0].limit(50)
    hi, lo = jpeg_cost.reencode(split, 90), jpeg_cost.reencode(split, 10)
    for s in (hi, lo):
        assert s.x.shape == split.x.shape and s.x.dtype == np.uint8
        assert (s.y == split.y).all() and s.classes == split.classes
    p_hi, p_lo = jpeg_cost.psnr(split.x, hi.x), jpeg_cost.psnr(split.x, lo.x)
    assert np.isfinite(p_hi) and p_hi > p_lo + 5, (p_hi, p_lo)
    assert jpeg_cost.psnr(split.x, split.x) == float("inf")
    with pytest.raises(ValueError, match="quality"): jpeg_cost.reencode(split, 0)
