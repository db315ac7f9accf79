import pytest
import torch
from torch import nn

from optbench.models import available_models, make_model


def _count(model):
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("in_channels,image_size,num_classes", [(1, 16, 10), (3, 32, 100)])
def test_every_model_maps_any_input_shape_to_class_logits(name, in_channels, image_size, num_classes):
    options = {"width": 0.0625} if name.startswith(("resnet", "vgg")) else {}
    if name == "wideresnet":
        options = {"depth": 10, "widen_factor": 1, "width": 0.5}
    model = make_model(name, in_channels, image_size, num_classes, **options)
    logits = model(torch.randn(2, in_channels, image_size, image_size))
    assert logits.shape == (2, num_classes)


def test_resnet18_has_the_reference_parameter_count():
    # torchvision's ImageNet ResNet-18 has the same blocks; the CIFAR stem (3×3, no bias) and a 10-class head
    # differ from it by a computable amount
    import torchvision

    reference = torchvision.models.resnet18(num_classes=10)
    stem_difference = 64 * 3 * 7 * 7 - 64 * 3 * 3 * 3
    assert _count(make_model("resnet18", 3, 32, 10)) == _count(reference) - stem_difference


def test_norm_none_removes_every_batchnorm_and_width_scales_channels():
    plain = make_model("resnet18", 3, 32, 10, norm="none")
    assert not any(isinstance(module, nn.BatchNorm2d) for module in plain.modules())
    half = make_model("resnet18", 3, 32, 10, width=0.5)
    assert half.stem[0].out_channels == 32 and half.head[-1].in_features == 256


def test_lenet5_layout_matches_report_003():
    model = make_model("lenet5", 1, 28, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.AvgPool2d)]
    dense = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)] and len(pools) == 2 and len(dense) == 3


def test_wideresnet_depth_rule_and_bad_names():
    assert _count(make_model("wideresnet", 3, 32, 10, depth=16, widen_factor=2)) > _count(make_model("wideresnet", 3, 32, 10, depth=10, widen_factor=2))
    with pytest.raises(ValueError, match="invalid depth 12.*6n \\+ 4"):
        make_model("wideresnet", depth=12)
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        make_model("resnet19")
    with pytest.raises(ValueError, match="unknown option.*'depth'.*allowed: norm, width"):
        make_model("resnet18", depth=3)
    with pytest.raises(ValueError, match="invalid width 0"):
        make_model("resnet18", width=0)
