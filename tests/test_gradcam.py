"""cifar_gradcam.gradcam: CAM shape and range, localisation on synthetic data, the sanity check,
hooks released, bad input."""
import numpy as np
import pytest
import torch
from scipy import stats

from cifar_gradcam import loaders as L
from cifar_gradcam import gradcam as G
from cifar_gradcam.evaluate import Predictions, predict_split


@pytest.fixture(scope="module")
def trained(trained):
    "The session's shared model (tests/conftest.py, two CPU epochs on synthetic data) and its held-out split with masks."
    return trained.model, trained.test


def test_rank_correlation_ranks_ties_by_their_average():
    "Grad-CAM maps have many exact zeros: ties must share their average rank, as Spearman's definition asks."
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(6, 8, 8)), 0)              # about half the values are exactly 0
    b = np.maximum(a + rng.normal(scale=0.5, size=a.shape), 0)
    expected = [stats.spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(G.rank_correlation(a, b), expected, atol=1e-9)


def test_cam_shape_and_range(trained):
    model, test = trained
    x = L.normalize_batch(test.x[:10])
    for layer in ("layer1", "layer4"):
        cams = G.compute_cams(model, x, test.y[:10], layer, batch_size=4)
        assert cams.shape == (10, 32, 32) and cams.dtype == np.float32
        assert cams.min() >= 0 and cams.max() <= 1 + 1e-6 and (cams.max((1, 2)) > 0.99).all()


def test_cam_of_true_class_lies_on_the_pattern(trained):
    model, test = trained
    P = predict_split(model, test)
    ok = np.flatnonzero(~P.wrong)[:64]
    area = test.masks[ok].mean()  # the pattern covers 144 of 1024 pixels
    for layer in ("layer3", "layer4"):
        cams = G.compute_cams(model, L.normalize_batch(test.x[ok]), test.y[ok], layer)
        inside = G.cam_mass_inside(cams, test.masks[ok]).mean()
        # CAM mass per pixel inside the pattern against per pixel outside it: 1 for a map that ignored it
        density_ratio = (inside / area) / ((1 - inside) / (1 - area))
        assert density_ratio > 2, (layer, inside, area, density_ratio)


def test_randomised_model_gives_different_maps(trained):
    model, test = trained
    x, t = L.normalize_batch(test.x[:32]), test.y[:32]
    a = G.compute_cams(model, x, t)
    b = G.compute_cams(G.randomized_like(model), x, t)
    assert G.rank_correlation(a, b).mean() < 0.5
    assert G.rank_correlation(a, a).min() > 0.999


def test_hooks_released_mode_restored_grads_cleared(trained):
    model, test = trained
    model.train()
    try:
        G.compute_cams(model, L.normalize_batch(test.x[:4]), test.y[:4], "layer2", method="gradcam++")
        assert model.training
        assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
        model.eval()
        with torch.no_grad():
            model(L.normalize_batch(test.x[:2]))  # a later forward pass: still no hook appears
        assert all(not m._forward_hooks for m in model.modules())
    finally:
        model.eval()


def test_step_by_step_gradcam_matches_the_package(trained):
    model, test = trained
    x = L.normalize_batch(test.x[:3])
    lib = G.compute_cams(model, x, test.y[:3], "layer3")
    mine = np.stack([G.gradcam_by_hand(model, xi, int(t), "layer3") for xi, t in zip(x, test.y[:3])])
    np.testing.assert_allclose(lib, mine, atol=1e-3)


def test_other_methods_and_faithfulness(trained):
    model, test = trained
    x, t = L.normalize_batch(test.x[:8]), test.y[:8]
    for m in ("gradcam++", "eigencam"):
        assert G.compute_cams(model, x, t, method=m, batch_size=8).shape == (8, 32, 32)
    # ScoreCAM runs one forward pass per channel (256 at layer3): one image is enough here
    assert G.compute_cams(model, x[:1], t[:1], "layer3", method="scorecam").shape == (1, 32, 32)
    road = G.faithfulness(model, x, G.compute_cams(model, x, t), t)
    assert road.shape == (8,) and np.isfinite(road).all()


def test_predictions_confusion_and_mistakes(trained):
    model, test = trained
    model.train()
    P = predict_split(model, test)
    assert model.training
    model.eval()
    cm = P.confusion()
    assert cm.sum() == len(test) and np.trace(cm) == (~P.wrong).sum()
    assert P.wrong.sum() >= 5, "a 2-epoch model should leave mistakes to select from"
    idx = G.select_mistakes(P, n=5)
    assert P.wrong[idx].all() and (np.diff(P.confidence[idx]) <= 0).all()
    assert P.confidence[idx[0]] == P.confidence[P.wrong].max()  # the most confident mistake comes first
    rnd = G.select_mistakes(P, n=5, by="random", seed=1)
    assert P.wrong[rnd].all()
    cm2 = np.array([[5, 3, 0], [1, 6, 0], [0, 4, 2]])
    assert G.most_confused(cm2, ["a", "b", "c"], n=2) == [("c", "b", 4), ("a", "b", 3)]


def test_bad_input(trained):
    model, test = trained
    x = L.normalize_batch(test.x[:4])
    with pytest.raises(ValueError, match="choose one of layer1, layer2, layer3, layer4"):
        G.compute_cams(model, x, [0] * 4, "conv1")
    with pytest.raises(ValueError, match="unknown CAM method 'lime'"):
        G.compute_cams(model, x, [0] * 4, method="lime")
    raw = torch.from_numpy(test.x[:4]).permute(0, 3, 1, 2)
    with pytest.raises(ValueError, match="not normalised"):
        G.compute_cams(model, raw, [0] * 4)
    with pytest.raises(ValueError, match="unnormalised"):
        G.compute_cams(model, raw.float() / 255, [0] * 4)
    with pytest.raises(ValueError, match="unnormalised"):
        G.compute_cams(model, raw.float(), [0] * 4)
    with pytest.raises(ValueError, match="4 images but 3 targets"):
        G.compute_cams(model, x, [0] * 3)
    perfect = Predictions(np.eye(3, dtype=np.float32), np.arange(3), ("a", "b", "c"))
    with pytest.raises(G.NoMistakesError, match="no misclassified images"):
        G.select_mistakes(perfect)
    with pytest.raises(ValueError, match="unknown class"):
        G.select_mistakes(perfect, pair=("a", "zebra"))
