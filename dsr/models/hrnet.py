"""HRNet-W32 / W48 in PARE's layout: the pose HRNet of "deep-high-resolution-net" (Sun et al. 2019)
with PARE's fusion of the four branches into one feature map.

Parameter and buffer names are those of PARE's ``PoseHighResolutionNet`` (``conv1``, ``bn1``,
``conv2``, ``bn2``, ``layer1``, ``transition1..3``, ``stage2..4`` with ``branches`` /
``fuse_layers``, and ``upsample_stage_2..4`` or ``downsample_stage_1..3``), so PARE-layout state
dicts and the COCO pose-HRNet weights (``pose_hrnet_w32_256x192.pth``) load by name. PARE's
``final_layer`` (a 1x1 heatmap conv that its forward never calls) is not built; files that carry it
have it dropped with a report (:attr:`PoseHRNet.dropped_keys`).

Architecture, width ``W`` (32 or 48), input (B, 3, H, W_img):

* stem: two 3x3 stride-2 convs (3 -> 64 -> 64) with BN + ReLU, ``layer1``: 4 ResNet bottlenecks
  (64 -> 256) at stride 4;
* stages 2, 3, 4 (1, 4 and 3 modules) with 2, 3, 4 branches of ``W * 2**i`` channels at stride
  ``4 * 2**i``; each branch is 4 basic blocks, then every output ``i`` is ReLU(sum_j f_ij(x_j)):
  f_ii = identity, j > i: 1x1 conv + BN + nearest upsampling by ``2**(j-i)``, j < i: ``i-j``
  stride-2 3x3 convs (+BN, ReLU between, channels of branch j until the last, which maps to branch
  i's channels with BN and no ReLU). ``transition*`` convs make the new lowest-resolution branch
  from the previous lowest (3x3 stride 2 + BN + ReLU), or adapt channels (3x3 stride 1);
* fusion of the 4 outputs into ``15 * W`` channels (480 for W32, 720 for W48), concatenated in
  branch order, as PARE's two switches choose:

  ============  ========  ===============================================================
  downsample    use_conv  result
  ============  ========  ===============================================================
  False         False     branches 1-3 bilinearly resized (align_corners=True) to branch 0:
                          (B, 15W, H/4, W/4). PARE's ``hrnet_w32()`` default, what DSR's
                          ``BACKBONE: hrnet_w32`` builds.
  False         True      ``upsample_stage_2/3/4``: 1/2/3 x (bilinear x2, 3x3 conv, BN, ReLU)
                          -> stride 4. The backbone of PARE's own PARE model.
  True          False     branches 0-2 bilinearly resized to branch 3: (B, 15W, H/32, W/32).
                          PARE's HMR with ``hrnet_w32-interp``.
  True          True      ``downsample_stage_1/2/3``: 3/2/1 x (3x3 stride-2 conv, BN, ReLU)
                          -> stride 32. PARE's HMR with ``hrnet_w32-conv``.
  ============  ========  ===============================================================

Initialisation is PARE's ``init_weights``: every conv N(0, 0.001), BN weight 1 / bias 0 (before
any weights file is loaded). All BN momenta are 0.1, as in PARE.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["PoseHRNet", "HRNET_WIDTHS"]

HRNET_WIDTHS = (32, 48)
# (number of modules, number of branches) of stages 2, 3, 4; every branch has 4 basic blocks
_STAGES = ((1, 2), (4, 3), (3, 4))
_BLOCKS_PER_BRANCH = 4


def _conv_bn(cin: int, cout: int, stride: int, relu: bool) -> nn.Sequential:
    """3x3 conv (padding 1, no bias) + BN (+ ReLU): keys ``0.weight``, ``1.*``."""
    layers = [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class HRModule(nn.Module):
    """One multi-resolution module: per-branch basic blocks, then the exchange of all branches.

    forward(list of n tensors (B, C_i, H_i, W_i)) -> list of n tensors of the same shapes."""

    def __init__(self, channels: list[int]):
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*[BasicBlock(c, c) for _ in range(_BLOCKS_PER_BRANCH)]) for c in channels)
        fuse = []
        for i in range(n):
            row = []
            for j in range(n):
                if j > i:
                    row.append(nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, 1, 0, bias=False),
                                             nn.BatchNorm2d(channels[i]),
                                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = [_conv_bn(channels[j], channels[j], 2, relu=True) for _ in range(i - j - 1)]
                    steps.append(_conv_bn(channels[j], channels[i], 2, relu=False))
                    row.append(nn.Sequential(*steps))
            fuse.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for row in self.fuse_layers:
            y = row[0](xs[0])
            for f, x in zip(row[1:], xs[1:]):
                y = y + f(x)
            out.append(self.relu(y))
        return out


class PoseHRNet(nn.Module):
    """Pose HRNet trunk + PARE's branch fusion: (B, 3, H, W) -> (B, 15 * width, H/s, W/s), s = 4 or 32."""

    # tensors of the original's files that this module does not have (PARE's unused heatmap conv;
    # the 17-joint COCO heatmap conv of pose_hrnet_*.pth): dropped with a report when loading
    dropped_keys = ("final_layer.",)
    # layers absent from pose-HRNet weight files, kept at their initialisation when loading one
    new_keys = ("upsample_stage_", "downsample_stage_")

    def __init__(self, width: int = 32, downsample: bool = False, use_conv: bool = False, name: str = ""):
        super().__init__()
        if width not in HRNET_WIDTHS:
            raise ValueError(f"HRNet width {width} not supported; expected one of {HRNET_WIDTHS}")
        self.name = name or f"hrnet_w{width}"
        self.downsample, self.use_conv = downsample, use_conv
        self.conv1 = nn.Conv2d(3, 64, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        proj = nn.Sequential(nn.Conv2d(64, 256, 1, bias=False), nn.BatchNorm2d(256))
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=proj), *[Bottleneck(256, 64) for _ in range(3)])

        prev = [256]
        for s, (n_modules, n_branches) in enumerate(_STAGES, start=2):
            chans = [width * 2 ** i for i in range(n_branches)]
            setattr(self, f"transition{s - 1}", self._transition(prev, chans))
            setattr(self, f"stage{s}", nn.Sequential(*[HRModule(chans) for _ in range(n_modules)]))
            prev = chans
        self.out_channels = sum(prev)  # 15 * width
        self.stride = 32 if downsample else 4

        if use_conv and downsample:  # branch k (k = 0, 1, 2) -> 3 - k stride-2 convs
            for k in range(3):
                c = width * 2 ** k
                setattr(self, f"downsample_stage_{k + 1}",
                        nn.Sequential(*[m for _ in range(3 - k) for m in _conv_bn(c, c, 2, relu=True)]))
        elif use_conv:  # branch k (k = 1, 2, 3) -> k x (bilinear x2, conv, BN, ReLU)
            for k in range(1, 4):
                c = width * 2 ** k
                setattr(self, f"upsample_stage_{k + 1}", nn.Sequential(*[
                    m for _ in range(k)
                    for m in (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                              *_conv_bn(c, c, 1, relu=True))]))

        for m in self.modules():  # PARE's init_weights
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _transition(prev: list[int], cur: list[int]) -> nn.ModuleList:
        layers = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(nn.Identity() if prev[i] == c else _conv_bn(prev[i], c, 1, relu=True))
            else:  # new branch from the lowest-resolution one (one stride-2 step per added branch)
                steps = [_conv_bn(prev[-1], prev[-1], 2, relu=True) for _ in range(i - len(prev))]
                steps.append(_conv_bn(prev[-1], c, 2, relu=True))
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 4 outputs of stage 4: (B, W * 2**i, H / (4 * 2**i), W / (4 * 2**i)), i = 0..3."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        for s in (2, 3, 4):
            trans = getattr(self, f"transition{s - 1}")
            # existing branches keep their stream; a new one starts from the lowest resolution
            xs = [t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(trans)]
            xs = getattr(self, f"stage{s}")(xs)
        return xs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = self.stage_outputs(x)
        if self.downsample:
            if self.use_conv:
                xs = [getattr(self, f"downsample_stage_{k + 1}")(xs[k]) for k in range(3)] + [xs[3]]
            else:
                size = xs[3].shape[-2:]
                xs = [F.interpolate(t, size=size, mode="bilinear", align_corners=True) for t in xs[:3]] + [xs[3]]
        else:
            if self.use_conv:
                xs = [xs[0]] + [getattr(self, f"upsample_stage_{k + 1}")(xs[k]) for k in range(1, 4)]
            else:
                size = xs[0].shape[-2:]
                xs = [xs[0]] + [F.interpolate(t, size=size, mode="bilinear", align_corners=True) for t in xs[1:]]
        return torch.cat(xs, dim=1)
