"""cifar_gradcam.lr_finder: the range test restores everything, suggests LRs inside the sweep, and
the suggested LR actually trains better than one 100x smaller."""
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from cifar_gradcam import data as D
from cifar_gradcam.loaders import make_loaders
from cifar_gradcam import lr_finder as L
from cifar_gradcam import optim as O
from cifar_gradcam.model import is_channels_last, resnet18


def loader(split, batch=32, seed=0):
    return make_loaders(split, split, batch_size=batch, seed=seed, num_workers=0)[0]


def snapshot(model, opt):
    return {k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict()


def test_state_restored_parameter_by_parameter(synthetic):
    torch.manual_seed(0)
    model = resnet18().eval()  # a mode the sweep must put back, too
    opt = O.make_optimizer(model, lr=0.05)
    # give the optimizer some state (momentum buffers) to restore
    x, y = next(iter(loader(synthetic[0])))
    nn.functional.cross_entropy(model.train()(x), y).backward(); opt.step(); opt.zero_grad(); model.eval()
    weights, opt_state = snapshot(model, opt)
    opt_state = {"state": {k: {n: t.clone() for n, t in v.items()} for k, v in opt_state["state"].items()},
                 "param_groups": [dict(g) for g in opt_state["param_groups"]]}
    res = L.lr_range_test(model, loader(synthetic[0]), optimizer=opt, start_lr=1e-4, end_lr=1.0, num_iter=6)
    assert len(res.lrs) == 6
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    after = opt.state_dict()
    for k, v in opt_state["state"].items():
        for n, t in v.items():
            assert torch.equal(after["state"][k][n], t)
    assert [g["lr"] for g in after["param_groups"]] == [g["lr"] for g in opt_state["param_groups"]]
    assert not model.training
    assert not is_channels_last(model)  # the sweep may run channels-last, but leaves the layout it found


def test_sweep_keeps_a_channels_last_model_channels_last(synthetic):
    model = resnet18().to(memory_format=torch.channels_last)
    L.lr_range_test(model, loader(synthetic[0]), start_lr=1e-4, end_lr=1.0, num_iter=3, amp=False)
    assert is_channels_last(model)


def test_suggestions_lie_inside_the_sweep():
    lrs = np.geomspace(1e-5, 10, 100)
    rng = np.random.default_rng(0)
    x = np.log10(lrs)
    losses = 2.3 - 1.5 / (1 + np.exp(-3 * (x + 2))) + np.exp(3 * (x - 0.3)) + rng.normal(0, 0.02, 100)
    s = L.suggest_lrs(lrs, losses)
    assert set(s) == set(L.SUGGESTION_RULES)
    for name, lr in s.items():
        assert lrs.min() <= lr <= lrs.max(), name
    # this curve falls fastest at 1e-2 and is lowest near 0.15: every rule picks a point where it
    # still falls, below the minimum
    lr_min = lrs[losses.argmin()]
    assert 3e-3 < s["steepest"] < 3e-2
    for name, lr in s.items():
        assert 1e-3 < lr < lr_min, name


def test_diverging_sweep_stops_cleanly(synthetic, capsys):
    torch.manual_seed(0)
    model = resnet18()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = L.lr_range_test(model, loader(synthetic[0]), start_lr=1e-3, end_lr=1e6, num_iter=30, diverge_th=3)
    assert res.diverged and len(res.lrs) < 30
    assert "diverged" in capsys.readouterr().out
    assert all(res.lrs.min() <= v <= res.lrs.max() for v in res.suggestions.values())
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_input(synthetic):
    model = resnet18()
    dl = loader(synthetic[0])
    with pytest.raises(ValueError, match="train_loader is empty"):
        L.lr_range_test(model, DataLoader([]))
    with pytest.raises(ValueError, match=r"end_lr \(0.1\) must be above start_lr \(1.0\)"):
        L.lr_range_test(model, dl, start_lr=1.0, end_lr=0.1)
    for bad in (0, -5):
        with pytest.raises(ValueError, match="num_iter must be a positive integer"):
            L.lr_range_test(model, dl, num_iter=bad)
    opt = O.make_optimizer(model)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    with pytest.raises(RuntimeError, match="run the LR finder first"):
        L.lr_range_test(model, dl, optimizer=opt)


def test_weight_decay_skips_batchnorm_and_biases():
    model = resnet18()
    decay, no_decay = O.make_optimizer(model).param_groups
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_onecycle_schedule_shape():
    s = O.onecycle_schedule(0.2, epochs=3, steps_per_epoch=10)
    assert len(s["lr"]) == 30 and abs(s["lr"].max() - 0.2) < 1e-3 and abs(int(s["lr"].argmax()) - 0.25 * 30) <= 1.5
    with pytest.raises(ValueError, match="max_lr must be positive"):
        O.onecycle_schedule(-0.1)


def one_epoch_loss(lr: float, train: D.Split, seed: int = 0) -> float:
    "Train a fresh ResNet-18 for one epoch at constant `lr`; the mean loss over the last half of it."
    torch.manual_seed(seed)
    model = resnet18().train()
    opt = O.make_optimizer(model, lr=lr)
    losses = []
    for x, y in loader(train, seed=seed):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    return float(np.mean(losses[len(losses) // 2:]))


def test_suggested_lr_trains_better_than_100x_smaller(synthetic):
    torch.manual_seed(0)
    res = L.lr_range_test(resnet18(), loader(synthetic[0]), start_lr=1e-5, end_lr=10, num_iter=20)
    good, timid = one_epoch_loss(res.lr, synthetic[0]), one_epoch_loss(res.lr / 100, synthetic[0])
    assert good < timid, (res.lr, good, timid)
