"""Bottleneck ResNet v1.5 for small images, with every hidden width scaled (Appendix G.4).

Post-norm blocks as in the original ResNet (conv→BN→ReLU, residual add then ReLU); stride-2
downsampling sits in the 3×3 conv of a stage's first block ("v1.5"), with a 1×1 conv + BN
projection shortcut. Sized for 8×8 digits: a 3×3 stride-1 stem without max-pool, stages of
``blocks`` bottlenecks with widths ``width·(1, 2, 4, …)`` and expansion 4, global average pool,
``fc`` readout. Names follow torchvision (``conv1, bn1, layer1.0.conv2, layer1.0.downsample.0, fc``).

Init: convs Kaiming-normal in fan-in mode for ReLU (std √2/√fan_in; BN follows every conv, so
only the width scaling of this std matters), ``fc`` N(0, 1/fan_in) with zero bias, BN γ=1, β=0.
``zero_init_last_bn`` sets each block's ``bn3`` γ to 0 (timm's default, off here because it
leaves zero-norm gains at step 0, where relative-update metrics are undefined).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from lrtransfer.models.base import FamilyConfig
from lrtransfer.models.mlp import init_linear_

EXPANSION = 4


class ResNetConfig(FamilyConfig):
    """Shape of a bottleneck ResNet; `width` is the bottleneck width of the first stage."""

    family: Literal["resnet"] = Field("resnet", description="Model family discriminator.")
    in_channels: int = Field(1, gt=0, description="Input image channels (8x8 digits: 1).")
    num_classes: int = Field(10, gt=0, description="Number of output classes.")
    width: int = Field(16, gt=0, description="Stem / first-stage bottleneck channels; stage i uses width*2^i.")
    base_width: int = Field(16, gt=0, description="First-stage width of the 1x proxy that defines muP base shapes.")
    blocks: tuple[int, ...] = Field((1, 1, 1), description="Bottleneck blocks per stage; stages 2+ downsample by 2.")
    zero_init_last_bn: bool = Field(False, description="Init each block's last BN gamma to 0 (timm default).")

    @field_validator("blocks")
    @classmethod
    def _positive_blocks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(b < 1 for b in v):
            raise ValueError(f"need at least one stage and >= 1 block per stage, got {v}")
        return v

    def build(self) -> nn.Module:
        return ResNet(self)

    def check_data(self, data) -> None:
        if data.kind != "digits":
            raise ValueError(f"data.kind: the resnet model needs image data (digits), got {data.kind!r}")


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(c_out)


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (stride here, v1.5) → 1×1 expand ×4, each followed by BN; add; ReLU."""

    def __init__(self, c_in: int, planes: int, stride: int):
        super().__init__()
        c_out = planes * EXPANSION
        self.conv1, self.bn1 = _conv_bn(c_in, planes, 1)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
        self.conv3, self.bn3 = _conv_bn(planes, c_out, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(*_conv_bn(c_in, c_out, 1, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _stage(c_in: int, planes: int, n_blocks: int, stride: int) -> nn.Sequential:
    """``n_blocks`` bottlenecks; only the first changes channels and resolution (stride)."""
    blocks = [Bottleneck(c_in, planes, stride)]
    blocks += [Bottleneck(planes * EXPANSION, planes, 1) for _ in range(n_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """``model(images [B, C, H, W]) -> logits [B, num_classes]``; stages are ``layer1, layer2, …``."""

    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.cfg = cfg
        self.conv1, self.bn1 = _conv_bn(cfg.in_channels, cfg.width, 3)
        self.relu = nn.ReLU(inplace=True)
        c_in = cfg.width
        for i, n_blocks in enumerate(cfg.blocks):
            planes = cfg.width * 2**i
            self.add_module(f"layer{i + 1}", _stage(c_in, planes, n_blocks, stride=1 if i == 0 else 2))
            c_in = planes * EXPANSION
        self.fc = nn.Linear(c_in, cfg.num_classes)
        self.reset_parameters()

    def stages(self) -> list[nn.Sequential]:
        """The residual stages in order (``layer1``, ``layer2``, …)."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.cfg.blocks))]

    def reset_parameters(self) -> None:
        """Convs Kaiming fan-in, fc N(0, 1/fan_in), BN γ=1 β=0 (γ=0 for bn3 if zero_init_last_bn)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
            elif isinstance(module, nn.Linear):
                init_linear_(module)
        if self.cfg.zero_init_last_bn:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for images ``[B, in_channels, H, W]``."""
        x = self.relu(self.bn1(self.conv1(x)))
        for stage in self.stages():
            x = stage(x)
        return self.fc(x.mean(dim=(2, 3)))
