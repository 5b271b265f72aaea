"""The `cifar-gradcam` command: the whole pipeline, evaluate, Ctrl-C and --resume, bad usage."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from cifar_gradcam.cli import main
from cifar_gradcam.train import TrainConfig, short_run_peak

EXE = shutil.which("cifar-gradcam")
CLI = [EXE] if EXE else [sys.executable, "-c", "from cifar_gradcam.cli import console; console()"]
REPORT_FILES = {"config.json", "run.json", "history.csv", "history.json", "metrics.json", "last.pt", "best.pt",
                "report.md", "report.html", "samples.png", "augmentations.png", "lr_finder.png", "curves.png", "confusion_matrix.png",
                "misclassified.png", "gradcam_layers.png", "gradcam_pred_vs_true.png"}


def cli(*args, timeout=600, **kw):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, **kw)


def test_run_writes_every_file_of_the_report(smoke_run):
    names = {p.name for p in smoke_run.iterdir()}
    assert REPORT_FILES <= names, REPORT_FILES - names
    report = (smoke_run / "report.md").read_text()
    for png in (n for n in REPORT_FILES if n.endswith(".png")):
        assert f"]({png})" in report, png
    m = json.loads((smoke_run / "metrics.json").read_text())
    assert {"val", "test", "best_epoch", "seconds_per_epoch", "device"} <= set(m)
    assert m["val"]["split"] == "val" and m["val"]["images"] == 128 and "held out of the training images" in m["val"]["role"]
    assert len(m["val"]["per_class_accuracy"]) == 10 and 0 <= m["val"]["accuracy"] <= 1
    # synthetic data has a test split: scored once, at the end, for best.pt and the final model, with and without flip TTA
    assert m["test"]["split"] == "test" and m["test"]["images"] == 128 and "once at the end" in m["test"]["role"]
    assert {"accuracy", "loss", "accuracy_flip_tta"} <= set(m["test"]["best"]) and m["test"]["final"]
    assert report.count("Test accuracy") == 1 and report.count("Validation accuracy") == 1


def test_the_peak_learning_rate_is_the_recipes_unless_asked_for_the_finders(smoke_run, tmp_path):
    """By default the run trains at the recipe's peak, scaled to its batch and lowered for a short run (a smoke run has
    8 steps), and reports the sweep beside it."""
    m = json.loads((smoke_run / "metrics.json").read_text())
    cfg, bs = TrainConfig(), m["config"]["batch_size"]
    peak = short_run_peak(cfg.max_lr * bs / cfg.batch_size, m["config"]["epochs"] * (m["train_images"] // bs))
    assert m["config"]["max_lr"] == pytest.approx(peak) and peak < 0.025
    assert f"The run trains at max_lr {peak:.3g} (dashed line), the recipe's." in (smoke_run / "report.md").read_text()
    # --max-lr RULE trains at the finder's suggestion for that rule; a number skips the sweep
    r = cli("train", "--smoke", "--data", "synthetic", "--out", tmp_path / "valley", "--max-lr", "valley")
    assert r.returncode == 0, r.stderr
    said = re.search(r"LR finder: suggests max_lr = ([0-9.e-]+) \(valley", r.stdout)
    assert said, r.stdout
    got = json.loads((tmp_path / "valley" / "metrics.json").read_text())["config"]["max_lr"]
    assert got == pytest.approx(float(said.group(1)), rel=5e-3) and got != pytest.approx(0.025)
    r = cli("train", "--smoke", "--data", "synthetic", "--out", tmp_path / "fixed", "--max-lr", "0.03")
    assert r.returncode == 0 and "LR finder" not in r.stdout, r.stdout
    assert json.loads((tmp_path / "fixed" / "metrics.json").read_text())["config"]["max_lr"] == 0.03


def test_set_changes_the_recipe_and_resume_refuses_it(tmp_path):
    r = cli("train", "--smoke", "--data", "synthetic", "--out", tmp_path, "--max-lr", "0.03", "--stop-after", "1",
            "--epochs", "2", "--set", "cutout_p=0", "--set", "label_smoothing=0.2")
    assert r.returncode == 0, r.stderr
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["cutout_p"], saved["label_smoothing"], saved["max_lr"]) == (0, 0.2, 0.03)
    r = cli("train", "--smoke", "--data", "synthetic", "--out", tmp_path, "--resume", "--set", "cutout_p=0.5")
    assert r.returncode == 2 and "drop --set cutout_p=0.5" in r.stderr, r.stderr


def test_evaluate_reproduces_the_runs_accuracy(smoke_run, tmp_path):
    r = cli("evaluate", "--checkpoint", smoke_run / "best.pt", "--data", "synthetic", "--smoke", "--out", tmp_path,
            "--workers", "0")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "evaluate.json").read_text())
    run = json.loads((smoke_run / "metrics.json").read_text())
    assert got["split"] == "test" and got["accuracy"] == pytest.approx(run["test"]["best"]["accuracy"], abs=1e-9)
    assert "test accuracy" in r.stdout
    r = cli("evaluate", "--checkpoint", smoke_run / "best.pt", "--data", "synthetic", "--smoke", "--out", tmp_path,
            "--workers", "0", "--split", "val")
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "evaluate.json").read_text())
    assert got["split"] == "val" and got["accuracy"] == pytest.approx(run["val"]["accuracy"], abs=1e-9)


def test_train_in_float32_when_asked_and_the_sweep_says_its_size(tmp_path):
    r = cli("train", "--smoke", "--data", "synthetic", "--out", tmp_path, "--no-amp", "--no-channels-last")
    assert r.returncode == 0, r.stderr
    assert "LR finder: 10 steps at batch" in r.stdout and "Training in float32, NCHW on cpu" in r.stdout, r.stdout
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["precision"].startswith("float32, NCHW") and m["config"]["amp"] is False
    # a float32 run on a CPU says before it starts what it will cost, measured on this machine, and how to shorten it
    est = next(l for l in r.stdout.splitlines() if l.startswith("Note:"))
    assert "training runs in float32, at about" in est and "will take about" in est and "--limit" in est, est


def test_gradcam_command(smoke_run, tmp_path):
    r = cli("gradcam", "--checkpoint", smoke_run / "best.pt", "--data", "synthetic", "--smoke", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    assert {"confusion_matrix.png", "report.md"} <= {p.name for p in tmp_path.iterdir()}


def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes(tmp_path):
    args = ["train", "--smoke", "--data", "synthetic", "--epochs", "3", "--max-lr", "0.05", "--out", tmp_path,
            "--workers", "0"]
    # as from a terminal: SIGINT at its default (a shell running this suite in the background ignores it,
    # and a child would inherit that)
    p = subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "MPLBACKEND": "Agg"},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (tmp_path / "last.pt").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    from cifar_gradcam.checkpoint import load_checkpoint
    assert 1 <= load_checkpoint(tmp_path / "last.pt")["epoch"] < 3
    r = cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert [h["epoch"] for h in json.loads((tmp_path / "history.json").read_text())] == [1, 2, 3]


def test_stop_after_then_resume(tmp_path):
    base = ["train", "--smoke", "--data", "synthetic", "--epochs", "2", "--max-lr", "0.05", "--out", str(tmp_path),
            "--workers", "0", "--loader", "device"]
    assert main(base + ["--stop-after", "1"]) == 0
    assert len(json.loads((tmp_path / "history.json").read_text())) == 1
    assert main(base + ["--resume"]) == 0
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2
    assert json.loads((tmp_path / "config.json").read_text())["loader"] == "device"


@pytest.mark.parametrize("args, message", [
    (["run", "--epochs", "many"], "invalid int value"),
    (["frobnicate"], "invalid choice"),
    (["train", "--loader", "gpu"], "invalid choice"),
    (["train", "--data", "/nowhere/at/all", "--smoke"], "does not exist"),
    (["train", "--data", "cifar100", "--smoke"], "Unknown data source"),
    (["train", "--data", "synthetic", "--smoke", "--max-lr", "-1"], "max_lr=-1.0"),
    (["train", "--data", "synthetic", "--smoke", "--max-lr", "fastest"], "neither a learning rate nor an LR finder rule"),
    (["train", "--data", "synthetic", "--smoke", "--set", "cutout_p=abc"], "cutout_p takes a number"),
    (["train", "--data", "synthetic", "--smoke", "--set", "epochs=3"], "use --epochs for epochs"),
    (["train", "--data", "synthetic", "--smoke", "--set", "dropout=0.1"], "KEY one of anneal_strategy, base_momentum"),
    (["evaluate", "--checkpoint", "/nowhere.pt", "--data", "synthetic"], "no checkpoint at"),
    (["train", "--data", "synthetic", "--smoke", "--device", "tpu"], "unknown device 'tpu'"),
    (["gradcam", "--checkpoint", "x.pt", "--n", "0"], "must be at least 1"),
    (["train", "--data", "synthetic", "--smoke", "--resume", "--out", "/tmp/cifar-gradcam-never-made"], "no checkpoint"),
])
def test_bad_usage_exits_2_with_one_line(args, message):
    r = cli(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len([l for l in r.stderr.splitlines() if "error" in l]) == 1


def test_set_values_are_checked_against_each_fields_type():
    "--set and benchmarks/full_run.py share one parser: JSON values, checked against the field's type."
    from cifar_gradcam.cli import UsageError, parse_settings
    assert parse_settings(["cutout_p=0", "label_smoothing=0.2", "nesterov=false"]) == {"cutout_p": 0, "label_smoothing": 0.2, "nesterov": False}
    # fields whose default is None (amp, channels_last, num_workers) take their type or null, where no option of their own covers them
    assert parse_settings(["amp=true", "num_workers=null", "batch_size=64"], own={}) == {"amp": True, "num_workers": None, "batch_size": 64}
    for item, message in (("amp=3", "amp takes true or false or null"), ("num_workers=1.5", "num_workers takes a whole number or null"),
                          ("cutout_p=true", "cutout_p takes a number"), ("seed=null", "seed takes a whole number")):
        with pytest.raises(UsageError, match=re.escape(message)):
            parse_settings([item], own={})


def test_full_run_benchmark_refuses_a_bad_setting():
    "Every --set counts, not only the last one (the bad setting comes first here)."
    r = subprocess.run([sys.executable, "benchmarks/full_run.py", "--data", "synthetic", "--set", "cutout_p=abc", "--set", "amp=false"],
                       capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 1 and "cutout_p takes a number" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_internal_error_is_not_passed_off_as_a_usage_error(monkeypatch):
    "A bug (here a ValueError from deep inside) keeps its traceback: only the user's errors become one line, exit 2."
    import cifar_gradcam.cli as C
    def broken(args): raise ValueError("an internal bug")
    monkeypatch.setattr(C, "cmd_evaluate", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["evaluate", "--checkpoint", "x.pt", "--data", "synthetic"])


def test_evaluate_refuses_a_checkpoint_of_another_architecture(tmp_path):
    import torch.nn as nn
    from cifar_gradcam.train import fit
    train, test = __import__("cifar_gradcam.data", fromlist=["x"]).make_synthetic(n_train=128, n_test=32, seed=0)
    small = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    fit(small, train, test, epochs=1, batch_size=16, max_lr=0.05, out_dir=tmp_path, progress=False)
    r = cli("evaluate", "--checkpoint", tmp_path / "best.pt", "--data", "synthetic", "--smoke")
    assert r.returncode == 2 and "holds a Sequential model" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_report_html_is_one_self_contained_page_in_the_course_order(smoke_run):
    "report.html carries every figure of report.md inside it (no file next to it is needed), in the same order."
    import base64
    import re
    from html.parser import HTMLParser

    class Page(HTMLParser):
        def __init__(self):
            super().__init__(); self.imgs, self.h2, self._in_h2 = [], [], False
        def handle_starttag(self, tag, attrs):
            if tag == "img": self.imgs.append(dict(attrs)["src"])
            self._in_h2 = tag == "h2"
        def handle_data(self, data):
            if self._in_h2: self.h2.append(data); self._in_h2 = False

    page = Page(); page.feed((smoke_run / "report.html").read_text())
    md = (smoke_run / "report.md").read_text()
    assert page.h2 == re.findall(r"^## (.+)$", md, re.M)                      # the same sections, in order
    assert len(page.imgs) == len(re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", md)) >= 8
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,"), src[:40]
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<strong>" in (smoke_run / "report.html").read_text() and "<pre>" in (smoke_run / "report.html").read_text()


def _folder_with_test(root, train, test, rotate: int):
    "An ImageFolder tree of synthetic PNGs whose test/ images sit in the folder of the class `rotate` places on."
    from PIL import Image
    for split, data, shift in (("train", train, 0), ("test", test, rotate)):
        for i, (x, y) in enumerate(zip(data.x, data.y)):
            d = root / split / data.classes[(y + shift) % len(data.classes)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(d / f"{i:04d}.png")
    return root


def test_a_source_with_a_test_split_chooses_on_validation_and_scores_test_once(tmp_path):
    """With a folder that has test/, best.pt is chosen on validation images held out of train/, and test/ is scored
    once at the end. The test images carry wrong labels (each moved to the next class's folder), so the two splits
    disagree: a model chosen on them, or a test score mixed with the validation one, would show."""
    from cifar_gradcam.data import make_synthetic
    train, test = make_synthetic(n_train=800, n_test=100, seed=0)
    src = _folder_with_test(tmp_path / "src", train, test, rotate=1)
    out = tmp_path / "run"
    r = cli("train", "--data", src, "--out", out, "--epochs", "2", "--batch-size", "32", "--max-lr", "0.05", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "choosing best.pt on 80 validation images held out of them, scoring 100 test images once at the end" in r.stdout
    m = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert all("test_acc" not in rec and "test_loss" not in rec for rec in history)    # training never saw test/
    accs = [rec["val_acc"] for rec in history]
    assert m["best_epoch"] == 1 + accs.index(max(accs)) and m["train_images"] == 720
    assert m["val"]["accuracy"] == pytest.approx(max(accs), abs=1e-9) and m["val"]["accuracy"] > 0.5   # it learned
    assert m["test"]["images"] == 100 and m["test"]["best"]["accuracy"] < 0.25      # the mislabelled test split
    assert r.stdout.count("test accuracy") == 1


def test_a_run_near_chance_says_so_at_the_end_and_atop_the_report(tmp_path):
    "A run that learned nothing (a peak of 1e-6) warns in its last line and before the report's first figure."
    r = cli("run", "--smoke", "--data", "synthetic", "--out", tmp_path, "--workers", "0", "--max-lr", "1e-6")
    assert r.returncode == 0, r.stderr
    assert "Warning: accuracy" in r.stdout.strip().splitlines()[-1]
    md = (tmp_path / "report.md").read_text()
    assert md.index("**Warning:**") < md.index("![")
    assert "explain nothing" in md and json.loads((tmp_path / "metrics.json").read_text())["near_chance"]
    page = (tmp_path / "report.html").read_text()
    assert page.index('class="warning"') < page.index("<img")
