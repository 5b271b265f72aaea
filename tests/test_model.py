"""cifar_gradcam.model: the CIFAR ResNet-18, its statistics, the Grad-CAM layer names, the device."""
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
