"""The batched device path (`DeviceLoader`) against albumentations (`augmentations()`): the same pixels
for the same random choices, and the same distributions of choices. Runs on the CPU; on a GPU the
same code runs there (the device is a parameter)."""
import numpy as np
import pytest
import torch
from scipy import stats

from cifar_gradcam import data as D
from cifar_gradcam import device_loader as DL
from cifar_gradcam import loaders as L

S, PAD, HOLE = 32, 4, 16
N = 4000  # draws per path for the distribution tests
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def coordinate_image() -> np.ndarray:
    "Red = 8 x row, green = 8 x column, blue = 255: every pixel says where it came from; holes have blue != 255."
    r, c = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    return np.stack([r * 8, c * 8, np.full_like(r, 255)], -1).astype(np.uint8)


def _reflect(i: np.ndarray) -> np.ndarray:
    i = np.abs(i)
    return np.where(i > S - 1, 2 * (S - 1) - i, i)


def decode(out: np.ndarray) -> dict[str, np.ndarray]:
    """Read the random choices back out of augmented coordinate images (N, S, S, 3): crop offsets, flip,
    and the hole (present, top-left corner, height, width). Fails if an image fits no single choice."""
    n = len(out)
    hole = out[..., 2] != 255
    r, c = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    src_r, src_c = out[..., 0].astype(int) // 8, out[..., 1].astype(int) // 8
    fits_dy = np.stack([((src_r == _reflect(r + d - PAD)) | hole).all((1, 2)) for d in range(2 * PAD + 1)], 1)
    cand = [(d, f) for f in (0, 1) for d in range(2 * PAD + 1)]
    fits_dx = np.stack([((src_c == _reflect((c[:, ::-1] if f else c) + d - PAD)) | hole).all((1, 2)) for d, f in cand], 1)
    assert (fits_dy.sum(1) == 1).all() and (fits_dx.sum(1) == 1).all(), "an image fits no single crop/flip"
    dx_flip = np.array(cand)[fits_dx.argmax(1)]
    has = hole.any((1, 2))
    ys = np.where(has, hole.any(2).argmax(1), -1)
    xs = np.where(has, hole.any(1).argmax(1), -1)
    h, w = hole.any(2).sum(1), hole.any(1).sum(1)
    assert (out[hole] == DL.fill_colour()).all(), "a hole pixel is not the fill colour (the training-set mean)"
    return {"dy": fits_dy.argmax(1), "dx": dx_flip[:, 0], "flip": dx_flip[:, 1], "hole": has.astype(int),
            "hole_y": ys, "hole_x": xs, "hole_h": h, "hole_w": w, "hole_px": hole.sum((1, 2)), "n": n}


def padded_coordinate_image(device: str) -> torch.Tensor:
    "The coordinate image as `DeviceLoader` stores it: reflect-padded, uint8 NHWC, on `device`."
    return DL.DeviceLoader(D.Split(coordinate_image()[None], np.zeros(1, np.int64), ("x",)), 1, device=device).x


def albumentations_draws(n: int, seed: int = 0, **kw) -> np.ndarray:
    aug, img = L.augmentations(L.AugSpec(**kw), seed=seed), coordinate_image()
    return np.stack([aug(image=img)["image"] for _ in range(n)])


def device_draws(n: int, seed: int = 0, device: str = "cpu", **kw) -> np.ndarray:
    padded = padded_coordinate_image(device)
    spec = L.AugSpec(**kw)
    params = DL.draw_augment_params(n, torch.Generator(device=device).manual_seed(seed), spec)
    return DL.apply_augment(padded.expand(n, -1, -1, -1), params, spec).cpu().numpy()


@pytest.mark.parametrize("device", DEVICES)
def test_same_choices_give_the_same_pixels_as_albumentations(device):
    out = albumentations_draws(300, seed=1)
    d = decode(out)
    assert d["hole"].sum() > 100 and d["flip"].sum() > 100  # the draws exercise every branch
    t = lambda k: torch.as_tensor(d[k], device=device)
    params = DL.AugmentParams(t("dy"), t("dx"), t("flip").bool(), t("hole").bool(), t("hole_y").clamp_min(0),
                             t("hole_x").clamp_min(0))
    padded = padded_coordinate_image(device)
    mine = DL.apply_augment(padded.expand(len(out), -1, -1, -1), params).cpu().numpy()
    np.testing.assert_array_equal(mine, out)


def test_same_on_real_looking_images_through_the_loader():
    "Unaugmented DeviceLoader batches equal the evaluation loader's; pad=0, no flip/hole gives the plain images."
    train, _ = D.make_synthetic(200, 10, seed=3)
    a, ya = next(iter(DL.DeviceLoader(train, 64, device="cpu", augment=False)))
    b, yb = next(iter(L.eval_loader(train, 64, num_workers=0)))
    torch.testing.assert_close(a, b, rtol=0, atol=0); assert torch.equal(ya, yb)
    c, _ = next(iter(DL.DeviceLoader(train, 64, device="cpu", shuffle=False, augment=L.AugSpec(pad=0, flip_p=0, cutout_p=0))))
    torch.testing.assert_close(c, b, rtol=0, atol=0)


def _chi2_p(observed: np.ndarray, expected_probs: np.ndarray) -> float:
    return stats.chisquare(observed, expected_probs * observed.sum()).pvalue


def _marginals(d: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    "Observed counts and the distribution albumentations' settings define, for each choice."
    has = d["hole"] == 1
    return {"dy": (np.bincount(d["dy"], minlength=9), np.full(9, 1 / 9)),
            "dx": (np.bincount(d["dx"], minlength=9), np.full(9, 1 / 9)),
            "flip": (np.bincount(d["flip"], minlength=2), np.array([0.5, 0.5])),
            "hole": (np.bincount(d["hole"], minlength=2), np.array([0.5, 0.5])),
            "hole_y": (np.bincount(d["hole_y"][has], minlength=17), np.full(17, 1 / 17)),
            "hole_x": (np.bincount(d["hole_x"][has], minlength=17), np.full(17, 1 / 17))}


@pytest.fixture(scope="module", params=DEVICES)
def decoded(request):
    "Decoded choices of N draws from albumentations, and from the batched path on each device."
    return {"albumentations": decode(albumentations_draws(N, seed=0)),
            "device": decode(device_draws(N, seed=0, device=request.param))}


@pytest.mark.parametrize("path", ["albumentations", "device"])
def test_both_paths_draw_from_the_intended_distributions(decoded, path):
    d = decoded[path]
    has = d["hole"] == 1
    assert (d["hole_h"][has] == HOLE).all() and (d["hole_w"][has] == HOLE).all()  # whole 16x16 holes, inside
    for name, (obs, probs) in _marginals(d).items():
        assert len(obs) == len(probs), f"{path}: {name} takes values outside the intended range: {obs}"
        p = _chi2_p(obs, probs)
        assert p > 1e-4, f"{path}: {name} counts {obs.tolist()} do not fit {probs.round(3).tolist()} (p={p:.2g})"


def test_the_two_paths_agree_with_each_other(decoded):
    a, b = _marginals(decoded["albumentations"]), _marginals(decoded["device"])
    for name in a:
        table = np.stack([a[name][0], b[name][0]])
        p = stats.chi2_contingency(table[:, table.sum(0) > 0]).pvalue
        assert p > 1e-4, f"{name}: albumentations {a[name][0].tolist()} vs device {b[name][0].tolist()} (p={p:.2g})"
    # joint: flip and hole are independent coins in both
    for d in decoded.values():
        assert stats.chi2_contingency(np.histogram2d(d["flip"], d["hole"], bins=2)[0]).pvalue > 1e-4


def test_the_distribution_check_can_fail():
    "A path with other settings (holes 30% of the time, offsets 0..6) is caught by the same checks."
    d = decode(device_draws(N, seed=0, cutout_p=0.3))
    obs, probs = _marginals(d)["hole"]
    assert _chi2_p(obs, probs) < 1e-6
    d = decode(device_draws(N, seed=0, pad=3))
    obs, probs = _marginals(d)["dy"]
    assert obs[-2:].sum() == 0 and _chi2_p(obs, probs) < 1e-6


def test_device_loader_is_reproducible_and_resumable():
    train, _ = D.make_synthetic(300, 10, seed=0)
    dl = DL.DeviceLoader(train, 64, device="cpu", seed=7)
    epoch0 = [x for x, _ in dl]; epoch1 = [x for x, _ in dl]
    assert len(epoch0) == len(dl) == 300 // 64
    assert not torch.equal(epoch0[0], epoch1[0])
    again = DL.DeviceLoader(train, 64, device="cpu", seed=7)
    again.batch_sampler.set_epoch(1)
    assert all(torch.equal(a, b) for a, (b, _) in zip(epoch1, again))
    other = next(iter(DL.DeviceLoader(train, 64, device="cpu", seed=8)))[0]
    assert not torch.equal(other, epoch0[0])


def test_channels_last_output_is_the_same_values():
    train, _ = D.make_synthetic(100, 10, seed=0)
    a, _ = next(iter(DL.DeviceLoader(train, 32, device="cpu", seed=1)))
    b, _ = next(iter(DL.DeviceLoader(train, 32, device="cpu", seed=1, channels_last=True)))
    assert b.is_contiguous(memory_format=torch.channels_last) and a.is_contiguous()
    assert torch.equal(a, b)


def test_bad_settings_are_clear_errors():
    train, _ = D.make_synthetic(50, 10, seed=0)
    with pytest.raises(D.DataError, match="cutout=40"):
        DL.DeviceLoader(train, 16, device="cpu", augment=L.AugSpec(cutout=40))
    with pytest.raises(D.DataError, match="flip_p=1.5"):
        DL.draw_augment_params(4, torch.Generator(), L.AugSpec(flip_p=1.5))
    with pytest.raises(D.DataError, match="batch_size"):
        DL.DeviceLoader(train, 0, device="cpu")
    with pytest.raises(D.DataError, match="empty split"):
        DL.DeviceLoader(train.subset([]), 16, device="cpu")
