"""ResNet-18/34/50 image backbone with torchvision-compatible parameter names.

The PyPI torchvision wheels do not load against the CPU torch on our machines (DESIGN §8), so
the network is ours; its state-dict names (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer2.0.downsample.0``) equal torchvision's, so ImageNet weights saved from torchvision load
with ``weights=path``.
"""

from __future__ import annotations

import pickle

import torch
from torch import nn

from ...errors import BevkdError


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # stride on the 3x3 conv, as torchvision (ResNet v1.5)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


_ARCH = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
         50: (Bottleneck, (3, 4, 6, 3))}


def make_layer(block: type[nn.Module], inplanes: int, planes: int, blocks: int,
               stride: int = 1) -> nn.Sequential:
    """A ResNet stage (torchvision layout: ``downsample`` = 1x1 conv + BN when shapes change)."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """Image backbone returning the outputs of ``out_stages`` (1..4: strides 4, 8, 16, 32).

    Args:
        depth: 18, 34 or 50.
        out_stages: which stages to return, in order.
        frozen_stages: stages 0 (stem) .. k whose parameters are frozen (-1: none).
        norm_eval: keep the BatchNorm layers in eval mode in training: they normalise with
            their stored statistics and never update them (BEVDepth's own configs train with
            ``norm_eval=False``: statistics of each batch, running averages updated).
        weights: optional path to a torchvision-format state dict (e.g. ImageNet).
    """

    def __init__(self, depth: int = 50, out_stages: tuple[int, ...] = (1, 2, 3, 4),
                 frozen_stages: int = -1, norm_eval: bool = False, weights: str | None = None):
        super().__init__()
        if depth not in _ARCH:
            raise BevkdError(f"ResNet depth must be one of {sorted(_ARCH)}, got {depth}")
        if not -1 <= frozen_stages <= 4:
            raise BevkdError(f"ResNet frozen_stages must be -1 (none) to 4 (the stem and all "
                             f"four stages), got {frozen_stages}")
        if not out_stages or any(s not in (1, 2, 3, 4) for s in out_stages):
            raise BevkdError(f"ResNet out_stages must be stages among 1-4, got {out_stages}")
        block, layers = _ARCH[depth]
        self.out_stages, self.frozen_stages, self.norm_eval = out_stages, frozen_stages, norm_eval
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            setattr(self, f"layer{i + 1}", make_layer(block, inplanes, planes, n, 1 if i == 0 else 2))
            inplanes = planes * block.expansion
        self.out_channels = tuple((64, 128, 256, 512)[s - 1] * block.expansion for s in out_stages)
        # a frozen stage keeps whatever it starts from: say so when that is the random init
        self.pretrained = weights is not None
        if weights is not None:
            self.load_weights(weights)
        self._freeze()
        self.train()  # norm_eval holds from the start, whoever calls train() (or nobody)

    def load_weights(self, path: str) -> None:
        """Load a torchvision-format state dict (the classifier ``fc.*`` is ignored)."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
            # (a file that is no checkpoint at all fails in the unpickler)
            raise BevkdError(f"cannot read backbone weights {path}: "
                             f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
                             ) from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                                  for v in state.values()):
            raise BevkdError(f"backbone weights {path} are not a state dict of tensors (a "
                             f"{type(state).__name__}); a bevkd run's checkpoint is not one "
                             "either: `bevkd pretrain` writes the backbone's own file")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
               if k in own and own[k].shape != v.shape]
        missing = sorted(set(own) - set(state))
        # e.g. a ResNet-34 file for a ResNet-18: every tensor of the 18 is there, so only the
        # extra blocks tell that the file is another network
        unexpected = sorted(set(state) - set(own))
        if bad or missing or unexpected:
            raise BevkdError(f"backbone weights {path} do not fit this ResNet-{self.depth}: "
                             + "; ".join(bad[:3] + [f"missing {m}" for m in missing[:3]]
                                         + [f"unexpected {u}" for u in unexpected[:3]]))
        self.load_state_dict(state)

    def _freeze(self) -> None:
        if self.frozen_stages >= 0:
            for m in (self.conv1, self.bn1):
                m.requires_grad_(False)
        for i in range(1, self.frozen_stages + 1):
            getattr(self, f"layer{i}").requires_grad_(False)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):  # SyncBatchNorm too (DDP)
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: (B, 3, H, W) -> features of ``out_stages``, (B, C_s, H / stride_s, W / stride_s)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_stages:
                outs.append(x)
            if i >= max(self.out_stages):
                break
        return outs


def random_frozen_stages(model: nn.Module) -> list[str]:
    """Names of the ResNets in ``model`` whose frozen stages start from the random
    initialisation (``frozen_stages >= 0`` and no ``weights``): trained like that, those stages
    stay random. The tiny preset freezes the whole ResNet and expects ``bevkd pretrain``
    weights (``model.args.backbone_weights``)."""
    return [name or type(model).__name__ for name, m in model.named_modules()
            if isinstance(m, ResNet) and m.frozen_stages >= 0 and not m.pretrained]
