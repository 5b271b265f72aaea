"""Fixtures the test modules share: one synthetic data set, one model trained on it, one `cifar-gradcam run`
in smoke mode (its report folder), and a headless browser; each made once per session."""
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cifar_gradcam import data as D
from cifar_gradcam.cli import main
from cifar_gradcam.model import resnet18
from cifar_gradcam.train import fit, seed_everything


@pytest.fixture(scope="session")
def synthetic():
    "1,000 synthetic training images and 200 held-out ones with masks (where each class's glyph is)."
    return D.make_synthetic(n_train=1000, n_test=200, seed=0)


@pytest.fixture(scope="session")
def trained(synthetic, tmp_path_factory):
    """A ResNet-18 trained once for two CPU epochs on 640 of the synthetic training images, with its history and
    output folder (checkpoints, history files): the learning test checks it learned, the Grad-CAM tests explain it.
    Tests must not change it: copy it first (`copy.deepcopy`) to modify weights or modes for good."""
    train, test = synthetic[0].limit(640), synthetic[1]
    out = tmp_path_factory.mktemp("trained")
    seed_everything(0)
    model = resnet18()
    history = fit(model, train, test, epochs=2, batch_size=32, max_lr=0.05, num_workers=0, out_dir=out, progress=False)
    return SimpleNamespace(model=model.eval(), history=history, out=out, train=train, test=test)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    "The report folder of `cifar-gradcam run --smoke --data synthetic` (every file the command writes)."
    out = tmp_path_factory.mktemp("run")
    assert main(["run", "--smoke", "--data", "synthetic", "--out", str(out), "--workers", "0"]) == 0
    return out


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (tools/headless.py). Skipped where there is none, unless CI_REQUIRE_BROWSER=1
    (set by .ci/run, which installs Debian's `chromium`): there a missing browser fails the test."""
    from headless import Browser, find_chromium
    if find_chromium() is None:
        if os.environ.get("CI_REQUIRE_BROWSER") == "1":
            pytest.fail("CI_REQUIRE_BROWSER=1 but no Chromium on PATH: apt-get install -y chromium")
        pytest.skip("no Chromium on PATH (apt-get install -y chromium) for the browser checks")
    with Browser() as b:
        b.send("Network.enable", session=True)
        b.send("Network.setBlockedURLs", session=True, urls=["https://*"])   # offline: nothing from the web
        yield b
