"""cifar_gradcam.model: the CIFAR ResNet-18, its statistics, the Grad-CAM layer names, the device."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from cifar_gradcam import model as M


def test_parameter_count_and_output_shape():
    net = M.resnet18()
    assert M.count_parameters(net) == 11_173_962
    assert net(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert M.resnet18(num_classes=100)(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_cifar_stem():
    net = M.resnet18()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)


def test_stage_sizes_and_cost():
    s = M.model_stats(M.resnet18())
    assert {k: v[1:] for k, v in s["stage_shapes"].items()} == {
        "layer1": (32, 32), "layer2": (16, 16), "layer3": (8, 8), "layer4": (4, 4)}
    assert 550e6 < s["macs_per_image"] < 560e6


def test_model_stats_restores_mode_and_leaves_no_hooks():
    net = M.resnet18().train()
    M.model_stats(net)
    assert net.training
    assert all(not m._forward_hooks for m in net.modules())


def test_gradcam_layer_names():
    net = M.resnet18()
    for name in M.GRADCAM_LAYERS:
        assert M.gradcam_layer(net, name) is getattr(net, name)[-1]
    wrapped = nn.DataParallel(net)
    assert M.gradcam_layer(wrapped, "layer3") is net.layer3[-1]
    with pytest.raises(ValueError, match="Unknown layer 'fc'.*layer1, layer2, layer3, layer4"):
        M.gradcam_layer(net, "fc")
    with pytest.raises(ValueError, match="expects a ResNet"):
        M.gradcam_layer(nn.Linear(2, 2), "layer4")


def test_get_device(capsys):
    dev = M.get_device()
    assert "Using" in capsys.readouterr().out
    assert dev.type in ("cuda", "mps", "cpu")
    assert M.get_device("cpu", verbose=False) == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        M.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            M.get_device("cuda")


def _cpuinfo_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return set(next(line for line in f if line.startswith("flags")).split(":", 1)[1].split())


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads Linux's /proc/cpuinfo")
def test_cpu_bf16_detection_agrees_with_the_kernels_cpu_flags():
    flags = _cpuinfo_flags()
    assert M.cpu_bf16_native() == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_cpu_precision_follows_the_hardware_and_can_be_forced():
    native = M.cpu_bf16_native()
    p = M.precision("cpu")
    assert (p.dtype, p.channels_last, p.scaled) == ((torch.bfloat16 if native else None), native, False)
    off = M.precision("cpu", amp=False, channels_last=False)
    assert off.dtype is None and not off.channels_last and not off.grad_scaler().is_enabled()
    on = M.precision("cpu", amp=True, channels_last=True)
    assert on.dtype == torch.bfloat16 and on.channels_last
    conv = on.prepare(nn.Conv2d(3, 8, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = on.inputs(torch.randn(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    with on.autocast():
        assert conv(x).dtype == torch.bfloat16
    with off.autocast():
        assert conv(x).dtype == torch.float32


def test_cpu_without_bf16_trains_in_float32(monkeypatch):
    monkeypatch.setattr(M, "cpu_bf16_features", lambda: [])
    p = M.precision("cpu")
    assert p.dtype is None and not p.channels_last and "no AMX or AVX-512 BF16" in str(p)


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, torch.float16)])
def test_gpu_precision_asks_for_native_bf16_not_emulated(monkeypatch, native, dtype):
    """A T4 emulates bfloat16: `torch.cuda.is_bf16_supported()` says yes unless asked with
    `including_emulation=False`. Such a GPU must get float16 with loss scaling."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    p = M.precision(torch.device("cuda"))
    assert p.dtype == dtype and p.scaled == (dtype == torch.float16) and p.channels_last
    assert M.precision(torch.device("cuda"), amp=False).dtype is None


def test_evaluating_restores_the_mode_even_after_an_error():
    net = M.resnet18().train()
    with M.evaluating(net):
        assert not net.training and not net.layer1[0].bn1.training
    assert net.training and net.layer1[0].bn1.training
    with pytest.raises(RuntimeError), M.evaluating(net):
        raise RuntimeError("inside")
    assert net.training
    net.eval()
    with M.evaluating(net):
        pass
    assert not net.training
