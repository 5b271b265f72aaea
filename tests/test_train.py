"""cifar_gradcam.train: the model learns, resuming is exact, the NaN guard, checkpoint errors."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cifar_gradcam import data as D
from cifar_gradcam import loaders as L
from cifar_gradcam import evaluate as E
from cifar_gradcam import checkpoint as CK
from cifar_gradcam import train as T
from cifar_gradcam.model import precision, resnet18

SHARED_TAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg-train.tar.gz"


def test_learns_synthetic_data_in_two_cpu_epochs(trained):
    "The session's shared model (tests/conftest.py): two epochs on 640 synthetic images, with every file of a run."
    h, out = trained.history, trained.out
    # chance is 0.1; measured 0.675 in float32 and 0.73 in bfloat16 (one epoch gives only about 0.29)
    assert len(h) == 2 and h[-1]["val_acc"] > 0.5, h.records
    for f in ("last.pt", "best.pt", "history.csv", "history.json", "config.json"):
        assert (out / f).exists(), f
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 2
    assert (out / "history.csv").read_text().startswith("epoch,train_loss,train_acc,val_loss,val_acc,lr,seconds")


def test_learns_with_augmentation_on_the_device(synthetic):
    "The batched device path (here on the CPU) trains as well: same recipe, same learning test."
    train, test = synthetic
    T.seed_everything(0)
    h = T.fit(resnet18(), train.limit(640), test, epochs=2, batch_size=32, max_lr=0.05, loader="device",
              device="cpu", progress=False)
    assert len(h) == 2 and h[-1]["val_acc"] > 0.5, h.records  # chance is 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("loader", T.LOADERS)
def test_gpu_fast_path_learns(synthetic, loader):
    "On a GPU: AMP, channels_last and torch.compile on, with either loader; the model still learns."
    train, test = synthetic
    T.seed_everything(0)
    h = T.fit(resnet18(), train, test, epochs=3, batch_size=64, max_lr=0.1, loader=loader, compile=True,
              device="cuda", progress=False)
    assert h[-1]["val_acc"] > 0.4, h.records  # chance is 0.1


@pytest.mark.skipif(not SHARED_TAR.exists(), reason="real CIFAR-10 not present")
def test_learns_real_cifar10_in_float32_and_in_bfloat16_alike(monkeypatch, tmp_path):
    """The same small real-data run in float32 and under bfloat16 autocast (channels-last): both learn well
    above chance and land close, so the CPU fast path costs no accuracy."""
    monkeypatch.setenv("CIFAR_GRADCAM_CACHE", str(tmp_path / "cache"))
    train, val, _ = D.load_cifar10(SHARED_TAR)
    train, val = train.limit(1000), val.limit(500)
    acc = {}
    # bfloat16 is the fast path only where the CPU runs it natively; elsewhere it is emulated, many times slower
    # than float32 and never chosen by `precision`, so there only float32 has to learn
    from cifar_gradcam.model import cpu_bf16_native
    for amp in (False, True) if cpu_bf16_native() else (False,):
        T.seed_everything(0)
        # max_lr 0.02 for batch 32: the real-data sweeps suggest about 0.03-0.04 for batch 128
        h = T.fit(resnet18(), train, val, epochs=2, batch_size=32, max_lr=0.02, amp=amp, channels_last=amp,
                  device="cpu", progress=False)
        acc[amp] = h[-1]["val_acc"]
    assert min(acc.values()) > 0.22, acc  # chance is 0.1
    if len(acc) == 2: assert abs(acc[True] - acc[False]) < 0.06, acc  # 500 images: one standard error is about 0.02


@pytest.mark.parametrize("loader,ema_decay", [(loader, 0.0) for loader in T.LOADERS] + [("albumentations", 0.9)])
def test_resume_matches_a_run_that_never_stopped(synthetic, tmp_path, loader, ema_decay):
    "Also with EMA: the average and SGD's own weights both carry across the stop."
    train, test = synthetic[0].limit(192), synthetic[1].limit(64)
    cfg = T.TrainConfig(epochs=2, batch_size=32, max_lr=0.05, num_workers=0, loader=loader, ema_decay=ema_decay)
    T.seed_everything(0); a = resnet18()
    ha = T.fit(a, train, test, cfg, out_dir=tmp_path / "a", progress=False)
    T.seed_everything(0); b = resnet18()
    T.fit(b, train, test, cfg, out_dir=tmp_path / "b", stop_after=1, progress=False)
    assert CK.load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    T.seed_everything(123); b = resnet18()  # a fresh process would start from other weights
    hb = T.fit(b, train, test, cfg, out_dir=tmp_path / "b", resume=True, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, atol=1e-5, rtol=1e-4, msg=k)
    assert len(hb) == 2 and hb[1]["val_acc"] == pytest.approx(ha[1]["val_acc"], abs=1e-6)
    if ema_decay:
        sgd_a, sgd_b = (CK.load_checkpoint(tmp_path / r / "last.pt")["train_model"] for r in "ab")
        for k, va in sgd_a.items():
            torch.testing.assert_close(va, sgd_b[k], atol=1e-5, rtol=1e-4, msg=k)


def test_resume_refuses_another_recipe(synthetic, tmp_path):
    train, test = synthetic[0].limit(128), synthetic[1].limit(32)
    T.fit(resnet18(), train, test, epochs=2, batch_size=32, max_lr=0.05, num_workers=0, out_dir=tmp_path,
          stop_after=1, progress=False)
    with pytest.raises(CK.CheckpointError, match="recipe differs.*max_lr"):
        T.fit(resnet18(), train, test, epochs=2, batch_size=32, max_lr=0.1, num_workers=0, out_dir=tmp_path,
              resume=True, progress=False)


def test_resume_refuses_a_change_in_every_recipe_setting(synthetic, tmp_path):
    "The recipe settings are derived from `TrainConfig` (all but `RUN_ONLY`), so a new field cannot escape the check."
    assert set(T.RUN_ONLY) <= {f.name for f in dataclasses.fields(T.TrainConfig)}
    train, test = synthetic[0].limit(160), synthetic[1].limit(32)  # 5 batches of 32, 4 of 33: enough for OneCycle
    cfg = T.TrainConfig(epochs=2, batch_size=32, max_lr=0.05, num_workers=0)
    T.fit(resnet18(), train, test, cfg, out_dir=tmp_path, stop_after=1, progress=False)
    for name in T.TrainConfig.recipe_fields():
        v = getattr(cfg, name)
        other = ((not v) if isinstance(v, bool) else v + 1 if isinstance(v, int)
                 else {"cos": "linear", "linear": "cos"}[v] if isinstance(v, str) else (v * 0.9 or 0.5))
        with pytest.raises(CK.CheckpointError, match=f"recipe differs.*{name}"):
            T.fit(resnet18(), train, test, cfg.replace(**{name: other}), out_dir=tmp_path, resume=True, progress=False)


def test_ema_is_what_is_scored_saved_and_returned(synthetic, tmp_path):
    """With ema_decay the moving average, not SGD's last weights, is evaluated every epoch, saved as the checkpoints'
    `model` (SGD's weights beside it as `train_model`) and left in `model`; and it learns like the plain run."""
    train, test = synthetic[0].limit(640), synthetic[1]
    T.seed_everything(0); model = resnet18()
    # 40 steps in all: a decay of 0.9 (about the last 10 steps) lags the fast-moving weights, 0.455 against 0.57 without EMA
    h = T.fit(model, train, test, epochs=2, batch_size=32, max_lr=0.05, ema_decay=0.5, amp=False, channels_last=False,
              num_workers=0, out_dir=tmp_path, progress=False)
    assert h[-1]["val_acc"] > 0.4, h.records  # chance is 0.1
    ck = CK.load_checkpoint(tmp_path / "last.pt")
    assert ck["ema_steps"] == 2 * 20  # one update per step: 20 batches of 32 an epoch
    differ = [k for k, v in ck["model"].items() if v.is_floating_point() and not torch.allclose(v, ck["train_model"][k])]
    assert "fc.weight" in differ and any(k.endswith("running_mean") for k in differ)  # weights and BatchNorm statistics
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ck["model"][k], msg=k)
    again = E.evaluate(model, L.eval_loader(test, 64, num_workers=0), test.classes, device="cpu", amp=False)
    assert again["acc"] == pytest.approx(h[-1]["val_acc"], abs=1e-6)


def test_momentum_settings_are_what_the_optimiser_uses(synthetic, tmp_path):
    "OneCycle cycles momentum between max_momentum and base_momentum; equal values keep it constant."
    train, test = synthetic[0].limit(128), synthetic[1].limit(32)
    T.fit(resnet18(), train, test, epochs=1, batch_size=16, max_lr=0.05, max_momentum=0.5, base_momentum=0.5,
          out_dir=tmp_path / "flat", progress=False)
    groups = CK.load_checkpoint(tmp_path / "flat" / "last.pt")["optimizer"]["param_groups"]
    assert all(g["momentum"] == pytest.approx(0.5) for g in groups), [g["momentum"] for g in groups]
    T.fit(resnet18(), train, test, epochs=2, batch_size=32, max_lr=0.05, max_momentum=0.9, base_momentum=0.6,
          out_dir=tmp_path / "cycled", stop_after=1, progress=False)
    mid = CK.load_checkpoint(tmp_path / "cycled" / "last.pt")["optimizer"]["param_groups"][0]["momentum"]
    assert 0.6 <= mid < 0.9  # half-way through, past the LR's peak: momentum is on its way back up from 0.6


def test_old_checkpoint_config_with_momentum_still_loads():
    "Configs saved before the momentum settings were renamed hold `momentum`, which OneCycle always overrode."
    saved = {**dataclasses.asdict(T.TrainConfig(epochs=3)), "momentum": 0.9}
    del saved["max_momentum"], saved["base_momentum"]
    cfg = T.TrainConfig.from_saved(saved)
    assert cfg == T.TrainConfig(epochs=3) and (cfg.max_momentum, cfg.base_momentum) == (0.95, 0.85)
    with pytest.raises(T.ConfigError, match="unknown training setting"):
        T.TrainConfig.from_saved({**saved, "warp_speed": 9})


def test_checkpoint_records_the_architecture_trained(synthetic, tmp_path):
    train, test = synthetic[0].limit(128), synthetic[1].limit(32)
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    T.fit(small, train, test, epochs=1, batch_size=16, max_lr=0.05, out_dir=tmp_path / "small", progress=False)
    assert CK.load_checkpoint(tmp_path / "small" / "last.pt")["arch"] == "Sequential"
    T.fit(resnet18(), train, test, epochs=1, batch_size=16, max_lr=0.05, out_dir=tmp_path / "resnet", progress=False)
    assert CK.load_checkpoint(tmp_path / "resnet" / "last.pt")["arch"] == "resnet18"


def test_nan_guard_keeps_last_good_checkpoint(synthetic, tmp_path):
    "The weights turn NaN after epoch 1: epoch 2 stops with a message naming the last good checkpoint, which is intact."
    train, test = synthetic[0].limit(128), synthetic[1].limit(32)
    model, good = resnet18(), {}

    def poison(rec):
        if rec["epoch"] == 1:
            good["bytes"] = (tmp_path / "last.pt").read_bytes()
            with torch.no_grad(): model.fc.weight.fill_(float("nan"))

    with pytest.raises(T.TrainingDiverged, match=r"loss became (nan|inf).*lower max_lr.*last good checkpoint"):
        T.fit(model, train, test, epochs=3, batch_size=32, max_lr=0.05, num_workers=0, out_dir=tmp_path, progress=False,
              log_every=1, on_epoch_end=poison)
    assert (tmp_path / "last.pt").read_bytes() == good["bytes"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_checkpoint_errors(synthetic, tmp_path):
    train, test = synthetic[0].limit(128), synthetic[1].limit(32)
    T.fit(resnet18(), train, test, epochs=2, batch_size=32, max_lr=0.05, num_workers=0, out_dir=tmp_path, progress=False)
    good = tmp_path / "last.pt"
    CK.load_checkpoint(good, resnet18())  # fine
    with pytest.raises(CK.CheckpointError, match="different model"):
        CK.load_checkpoint(good, resnet18(num_classes=100))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(CK.CheckpointError, match="not a readable checkpoint"):
        CK.load_checkpoint(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CK.CheckpointError, match="not a cifar_gradcam checkpoint"):
        CK.load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CK.CheckpointError, match="no checkpoint at"):
        CK.load_checkpoint(tmp_path / "missing.pt")


def test_evaluate_restores_mode_and_tta(synthetic):
    train, test = synthetic[0].limit(64), synthetic[1].limit(40)
    model = resnet18().train()
    _, dl = L.make_loaders(train, test, batch_size=16, num_workers=0)
    ev = E.evaluate(model, dl, test.classes)
    assert model.training and ev["n"] == 40 and set(ev["per_class"]) == set(test.classes)
    ev2 = E.evaluate(model, dl, test.classes, tta=True)
    # TTA is the average of the probabilities of each image and of its mirror image, in the same precision
    P = E.predict(model, dl, test.classes, tta=True)
    probs, labels = torch.from_numpy(P.probs), torch.from_numpy(P.labels)
    prec, by_hand = precision("cpu"), []
    with torch.no_grad(), prec.autocast():
        model.eval()
        for x, _ in dl:
            x = prec.inputs(x)
            by_hand.append((model(x).float().softmax(1) + model(x.flip(3)).float().softmax(1)).cpu() / 2)
        model.train()
    by_hand = torch.cat(by_hand)
    torch.testing.assert_close(probs, by_hand, atol=1e-5, rtol=1e-4)
    assert ev2["acc"] == pytest.approx((by_hand.argmax(1) == labels).double().mean().item(), abs=1e-9)
    assert not torch.allclose(by_hand, torch.from_numpy(E.predict(model, dl).probs), atol=1e-4)  # the mirror images changed something
    # per-class accuracies, weighted by each class's share of the images, make up the overall accuracy
    counts = test.class_counts()
    weighted = sum(ev["per_class"][c] * counts[c] for c in counts if counts[c]) / ev["n"]
    assert weighted == pytest.approx(ev["acc"], abs=1e-6)


def test_confusion_matrix_and_per_class_accuracy():
    cm = E.confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 0, 2, 2, 1], 4)
    assert cm.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]
    acc = E.per_class_accuracy(cm, ["a", "b", "c", "d"])
    assert acc["a"] == 1 and acc["b"] == 0.5 and acc["c"] == pytest.approx(2 / 3) and acc["d"] != acc["d"]  # NaN


def test_too_few_steps_for_onecycle(synthetic):
    with pytest.raises(ValueError, match="too few steps for OneCycleLR"):
        T.fit(resnet18(), synthetic[0].limit(32), synthetic[1].limit(32), epochs=1, batch_size=32, num_workers=0,
              progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="max_lr=-0.1"):
        T.TrainConfig(max_lr=-0.1)
    with pytest.raises(TypeError, match="unknown training setting"):
        T.TrainConfig().replace(lr=0.1)
    with pytest.raises(ValueError, match="loader='gpu'"):
        T.TrainConfig(loader="gpu")
    with pytest.raises(ValueError, match="ema_decay=1"):
        T.TrainConfig(ema_decay=1)


def test_ema_never_feeds_back_and_full_run_scores_either_weights(synthetic, tmp_path, monkeypatch):
    """The moving average only watches: a run with ema_decay trains SGD's weights exactly as the run without it, so its
    `train_model` is the plain run's model and one run gives both results. `benchmarks/full_run.py --from-run --weights
    train_model` scores those weights; on a run without EMA it says what to do instead."""
    train, test = synthetic[0].limit(320), synthetic[1]
    kw = dict(epochs=2, batch_size=32, max_lr=0.05, amp=False, channels_last=False, num_workers=0, progress=False)
    T.seed_everything(0); T.fit(resnet18(), train, test, out_dir=tmp_path / "plain", **kw)
    T.seed_everything(0); T.fit(resnet18(), train, test, out_dir=tmp_path / "ema", ema_decay=0.5, **kw)
    plain, ema = (CK.load_checkpoint(tmp_path / d / "last.pt") for d in ("plain", "ema"))
    for k, v in plain["model"].items():
        torch.testing.assert_close(ema["train_model"][k], v, rtol=0, atol=0, msg=k)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import full_run
    _, sgd = full_run.from_run(tmp_path / "ema", train, test, torch.device("cpu"), weights="train_model")
    _, avg = full_run.from_run(tmp_path / "ema", train, test, torch.device("cpu"))
    assert sgd["final_val_acc_plain"] == pytest.approx(plain["history"][-1]["val_acc"], abs=1e-6)
    assert avg["final_val_acc_plain"] == pytest.approx(ema["history"][-1]["val_acc"], abs=1e-6)
    assert sgd["best_val_acc"] is None and sgd["weights"] == "train_model"
    with pytest.raises(SystemExit, match="trained without ema_decay"):
        full_run.from_run(tmp_path / "plain", train, test, torch.device("cpu"), weights="train_model")


def test_compare_runs_pairs_the_same_images_and_calls_ties(monkeypatch):
    """benchmarks/compare_runs.py: the paired test reads which images each run got right from full_run.py's JSON; a
    difference within the seed spread is a tie however small p is, and runs on other images are refused."""
    import numpy as np
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import compare_runs, full_run
    from cifar_gradcam.evaluate import Predictions

    def report(correct, sha="abc"):
        labels = np.zeros(len(correct), int)
        probs = np.eye(2, dtype=np.float32)[np.where(correct, 0, 1)]
        bits = full_run.pack_correct(Predictions(probs, labels))
        return {"val_images": len(correct), "val_correct": {"plain": bits, "flip_tta": bits, "val_sha1": sha}}

    a = np.zeros(5000, bool); b = np.zeros(5000, bool)
    a[:4300] = b[:4300] = True; a[4300:4480] = True; b[4480:4600] = True     # 180 against 120 disagreements
    assert np.array_equal(full_run.unpack_correct(report(a)["val_correct"]["plain"], 5000), a)
    r = compare_runs.compare(report(a), report(b))
    assert (r["only_a"], r["only_b"], r["verdict"]) == (180, 120, "win") and r["p_value"] < 0.001
    assert compare_runs.compare(report(b), report(a))["verdict"] == "loss"
    assert compare_runs.compare(report(a), report(b), seed_spread=1.5)["verdict"] == "tie"   # 1.2 points < 1.5
    with pytest.raises(SystemExit, match="different validation images"):
        compare_runs.compare(report(a), report(b, sha="other"))


def test_checkpoints_from_before_the_rename_still_load_and_resume(synthetic, tmp_path):
    "A run saved when the validation figures were called test_loss/test_acc (and its data test_images) resumes as before."
    train, val = synthetic[0].limit(128), synthetic[1].limit(32)
    cfg = T.TrainConfig(epochs=2, batch_size=32, max_lr=0.05, num_workers=0, amp=False, channels_last=False)
    T.fit(resnet18(), train, val, cfg, out_dir=tmp_path, stop_after=1, progress=False)
    old = CK.load_checkpoint(tmp_path / "last.pt")
    old["history"] = [{{"val_loss": "test_loss", "val_acc": "test_acc"}.get(k, k): v for k, v in r.items()} for r in old["history"]]
    old["data"] = {("test_images" if k == "val_images" else k): v for k, v in old["data"].items()}
    torch.save(old, tmp_path / "last.pt")
    assert "test_acc" in torch.load(tmp_path / "last.pt", weights_only=True)["history"][0]
    assert CK.load_checkpoint(tmp_path / "last.pt")["history"][0]["val_acc"] == old["history"][0]["test_acc"]
    h = T.fit(resnet18(), train, val, cfg, out_dir=tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in h.records] == [1, 2] and all("val_acc" in r and "test_acc" not in r for r in h.records)
    assert T.History([{"epoch": 1, "test_loss": 1.0, "test_acc": 0.5}]).best["val_acc"] == 0.5   # an old history.json
