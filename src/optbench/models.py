"""Networks of the studies, for any input channels, image size and number of classes.

- ``lenet5``: report 003's LeNet (two 5×5 convolutions, each followed by 2×2 average pooling, three dense layers).
- ``resnet18/34/50/101``: CIFAR-style ResNets (He et al. 2016; 3×3 stem, no max pooling), ``norm="batch"``
  or ``"none"`` (report 003 trains them without BatchNorm too) and a ``width`` multiplier of the 64 base channels.
- ``vgg16``: VGG-16 with BatchNorm (Simonyan & Zisserman 2015), CIFAR-style single dense classifier.
- ``wideresnet``: WRN-depth-k (Zagoruyko & Komodakis 2016), pre-activation blocks.
- ``mlp``: a fully connected network (report 004).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

NORMS = ("batch", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class LeNet5(nn.Module):
    """LeNet-5: conv5×5 → avgpool2 → conv5×5 → avgpool2 → dense 120 → 84 → classes (tanh-free, ReLU)."""

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.AvgPool2d(2),
        )
        side = ((image_size // 2) - 4) // 2
        if side < 1:
            raise ValueError(f"invalid image_size {image_size} for lenet5: it needs images of at least 12×12 pixels")
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(inputs))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str):
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=bias)
        self.norm1 = _norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=bias)
        self.norm2 = _norm_layer(norm, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=bias), _norm_layer(norm, planes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(inputs)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(inputs))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str):
        super().__init__()
        bias = norm == "none"
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=bias)
        self.norm1 = _norm_layer(norm, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=bias)
        self.norm2 = _norm_layer(norm, planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=bias)
        self.norm3 = _norm_layer(norm, out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=bias), _norm_layer(norm, out_planes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(inputs)))
        out = torch.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return torch.relu(out + self.shortcut(inputs))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem, four stages (strides 1, 2, 2, 2), global average pooling."""

    def __init__(self, block, blocks_per_stage, in_channels=3, num_classes=10, norm="batch", width=1.0):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"invalid norm {norm!r}: allowed {', '.join(NORMS)}")
        planes = [_scaled(64 * 2**stage, width) for stage in range(4)]
        self.in_planes = planes[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=norm == "none"), _norm_layer(norm, planes[0]), nn.ReLU()
        )
        stages = []
        for stage, (stage_planes, count) in enumerate(zip(planes, blocks_per_stage)):
            stride = 1 if stage == 0 else 2
            layers = []
            for index in range(count):
                layers.append(block(self.in_planes, stage_planes, stride if index == 0 else 1, norm))
                self.in_planes = stage_planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(self.in_planes, num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(inputs)))


_VGG16_LAYOUT = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512, "pool")


class VGG16(nn.Module):
    """VGG-16 with BatchNorm; pooling stops once the feature map is 1×1, so small images work too."""

    def __init__(self, in_channels=3, image_size=32, num_classes=10, width=1.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for item in _VGG16_LAYOUT:
            if item == "pool":
                if side >= 2:
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
                continue
            out_channels = _scaled(item, width)
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(inputs))


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.norm2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.conv1(torch.relu(self.norm1(inputs)))
        out = self.conv2(torch.relu(self.norm2(self.dropout(out))))
        return out + self.shortcut(inputs)


class WideResNet(nn.Module):
    """WRN-depth-widen_factor: three groups of (depth − 4)/6 pre-activation blocks of 16k, 32k, 64k channels."""

    def __init__(self, depth=28, widen_factor=10, in_channels=3, num_classes=10, dropout=0.0, width=1.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"invalid depth {depth} for wideresnet: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...)")
        if widen_factor < 1:
            raise ValueError(f"invalid widen_factor {widen_factor}: it must be an integer >= 1")
        blocks = (depth - 4) // 6
        planes = [_scaled(16, width)] + [_scaled(base * widen_factor, width) for base in (16, 32, 64)]
        self.stem = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        groups, in_planes = [], planes[0]
        for group, group_planes in enumerate(planes[1:]):
            layers = []
            for index in range(blocks):
                stride = (1 if group == 0 else 2) if index == 0 else 1
                layers.append(WideBlock(in_planes, group_planes, stride, dropout))
                in_planes = group_planes
            groups.append(nn.Sequential(*layers))
        self.groups = nn.Sequential(*groups)
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_planes), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_planes, num_classes)
        )

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.groups(self.stem(inputs)))


class MLP(nn.Module):
    """Fully connected network: flatten, hidden ReLU layers, linear classifier."""

    def __init__(self, in_channels=1, image_size=28, num_classes=10, hidden_sizes=(256, 128)):
        super().__init__()
        sizes = [in_channels * image_size * image_size, *hidden_sizes]
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.layers(inputs)


def _resnet(block, counts):
    def build(in_channels, image_size, num_classes, norm="batch", width=1.0):
        return ResNet(block, counts, in_channels, num_classes, norm=norm, width=width)

    return build


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lambda in_channels, image_size, num_classes: LeNet5(in_channels, image_size, num_classes),
    "resnet18": _resnet(BasicBlock, (2, 2, 2, 2)),
    "resnet34": _resnet(BasicBlock, (3, 4, 6, 3)),
    "resnet50": _resnet(Bottleneck, (3, 4, 6, 3)),
    "resnet101": _resnet(Bottleneck, (3, 4, 23, 3)),
    "vgg16": lambda in_channels, image_size, num_classes, width=1.0: VGG16(in_channels, image_size, num_classes, width),
    "wideresnet": lambda in_channels, image_size, num_classes, depth=28, widen_factor=10, dropout=0.0, width=1.0: (
        WideResNet(depth, widen_factor, in_channels, num_classes, dropout, width)
    ),
    "mlp": lambda in_channels, image_size, num_classes, hidden_sizes=(256, 128): MLP(
        in_channels, image_size, num_classes, tuple(hidden_sizes)
    ),
}

#: the keyword options each model accepts besides the input shape and class count
MODEL_OPTIONS: dict[str, tuple[str, ...]] = {
    "lenet5": (),
    "resnet18": ("norm", "width"),
    "resnet34": ("norm", "width"),
    "resnet50": ("norm", "width"),
    "resnet101": ("norm", "width"),
    "vgg16": ("width",),
    "wideresnet": ("depth", "widen_factor", "dropout", "width"),
    "mlp": ("hidden_sizes",),
}


#: what the methods page says of each network
DESCRIPTIONS = {
    "lenet5": "report 003's LeNet: two 5×5 convolutions, each followed by 2×2 average pooling, then three dense layers",
    "resnet18": "CIFAR-style ResNet-18 (He et al. 2016): 3×3 stem without max pooling, four stages of basic blocks, "
                "BatchNorm or no normalization, a width multiplier of the 64 base channels",
    "resnet34": "CIFAR-style ResNet-34 (He et al. 2016), as ResNet-18 with more basic blocks",
    "resnet50": "CIFAR-style ResNet-50 (He et al. 2016), bottleneck blocks",
    "resnet101": "CIFAR-style ResNet-101 (He et al. 2016), bottleneck blocks, BatchNorm or no normalization",
    "vgg16": "VGG-16 with BatchNorm (Simonyan & Zisserman 2015) and a single dense classifier, CIFAR-style",
    "wideresnet": "Wide ResNet WRN-depth-k (Zagoruyko & Komodakis 2016), pre-activation blocks",
    "mlp": "a fully connected network with ReLU hidden layers (report 004)",
}


def available_models() -> list[str]:
    """Names accepted by :func:`make_model`."""
    return sorted(_BUILDERS)


def check_model_options(name: str, options: dict) -> None:
    """Raise ``ValueError`` for an unknown model or option, or a non-positive width."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}")
    unknown = sorted(set(options) - set(MODEL_OPTIONS[name]))
    if unknown:
        allowed = ", ".join(MODEL_OPTIONS[name]) or "none"
        raise ValueError(f"unknown option(s) {', '.join(map(repr, unknown))} for model {name!r}; allowed: {allowed}")
    if "width" in options and not (isinstance(options["width"], (int, float)) and options["width"] > 0):
        raise ValueError(f"invalid width {options['width']!r}: the width multiplier must be a number > 0")
    if "hidden_sizes" in options:
        sizes = options["hidden_sizes"]
        if not isinstance(sizes, (list, tuple)) or not all(isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in sizes):
            raise ValueError(f"invalid hidden_sizes {sizes!r}: give a list of layer widths, integers > 0 (e.g. [256, 128])")
    if "norm" in options and options["norm"] not in NORMS:
        raise ValueError(f"invalid norm {options['norm']!r}: allowed {', '.join(NORMS)}")


def make_model(name: str, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, **options) -> nn.Module:
    """Build model ``name`` for ``in_channels``×``image_size``×``image_size`` inputs and ``num_classes`` classes."""
    check_model_options(name, options)
    return _BUILDERS[name](in_channels, image_size, num_classes, **options)
