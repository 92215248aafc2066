"""MobileOne block: train-time multi-branch conv, inference-time single conv.

Paper: "MobileOne: An Improved One millisecond Mobile Backbone", Vasu et al., CVPR 2023,
https://arxiv.org/abs/2206.04040. Original code: https://github.com/apple/ml-mobileone and
https://github.com/apple/ml-fastvit (``models/modules/mobileone.py``); timm's
``timm/models/fastvit.py`` uses the same design. Module names follow timm (``conv_kxk``,
``conv_scale``, ``identity``, ``reparam_conv``) so timm checkpoints load unchanged.
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hybridvit.utils.errors import UserError
from .conv_bn import (ConvBN, build_act, build_norm, conv_kernel_bias, fuse_bn_tensor,
                      fuse_into_reparam_conv)

__all__ = ['MobileOneBlock']


class MobileOneBlock(nn.Module):
    """MobileOne block (`MobileOne <https://arxiv.org/abs/2206.04040>`_).

    Training time: the sum of ``num_conv_branches`` kxk conv-BN branches, a 1x1 conv-BN
    "scale" branch (when ``kernel_size > 1``) and a BN-only identity branch (when the input
    and output shapes agree), followed by the activation. :meth:`reparameterize` sums the
    branches into one biased kxk conv (``reparam_conv``) with the same stride, dilation and
    groups.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size of the kxk branches.
        stride: stride of every branch.
        dilation: dilation of the kxk branches (the 1x1 / identity branches sit on the
            centre tap, so the fused conv keeps this dilation).
        groups: conv groups (``in_channels`` for depthwise).
        num_conv_branches: number of kxk conv-BN branches (0 gives a BN-only block, as
            used for the "norm" half of RepMixer).
        use_scale_branch: add the 1x1 conv-BN branch when ``kernel_size > 1``.
        use_identity: add the BN identity branch when ``in_channels == out_channels`` and
            ``stride == 1``.
        norm_cfg: mmcv config of the branches' BatchNorms (``BN`` or ``SyncBN``).
        act_cfg: mmcv activation config, ``None`` for none (timm/official: GELU).
        deploy: build only ``reparam_conv``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, num_conv_branches: int = 1,
                 use_scale_branch: bool = True, use_identity: bool = True,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Optional[Dict] = dict(type='GELU'),
                 deploy: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise UserError(f'MobileOneBlock: kernel_size must be odd, got {kernel_size}')
        if in_channels % groups or out_channels % groups:
            raise UserError(f'MobileOneBlock: in_channels ({in_channels}) and out_channels '
                            f'({out_channels}) must be divisible by groups ({groups})')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation = dilation
        self.groups = groups
        self.deploy = deploy

        self.reparam_conv = None
        self.conv_kxk = None
        self.conv_scale = None
        self.identity = None
        if deploy:
            self.reparam_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                          padding=dilation * (kernel_size // 2),
                                          dilation=dilation, groups=groups, bias=True)
        else:
            if use_identity and in_channels == out_channels and stride == 1:
                self.identity = build_norm(norm_cfg, in_channels)
            if num_conv_branches > 0:
                self.conv_kxk = nn.ModuleList(
                    ConvBN(in_channels, out_channels, kernel_size, stride=stride,
                           dilation=dilation, groups=groups, norm_cfg=norm_cfg)
                    for _ in range(num_conv_branches))
            if use_scale_branch and kernel_size > 1:
                self.conv_scale = ConvBN(in_channels, out_channels, 1, stride=stride,
                                         groups=groups, norm_cfg=norm_cfg)
            if self.conv_kxk is None and self.conv_scale is None and self.identity is None:
                raise UserError('MobileOneBlock needs at least one branch: num_conv_branches '
                                '> 0, a scale branch or an identity branch')
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.act(self.reparam_conv(x))
        out = 0
        if self.identity is not None:
            out = self.identity(x)
        if self.conv_scale is not None:
            out = out + self.conv_scale(x)
        if self.conv_kxk is not None:
            for branch in self.conv_kxk:
                out = out + branch(x)
        return self.act(out)

    @torch.no_grad()
    def get_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight ``(out, in/groups, k, k)`` and bias of the equivalent single conv."""
        if self.reparam_conv is not None:
            return conv_kernel_bias(self.reparam_conv)
        ref = next(self.parameters())
        k = self.kernel_size
        kernel = ref.new_zeros(self.out_channels, self.in_channels // self.groups, k, k)
        bias = ref.new_zeros(self.out_channels)
        if self.conv_kxk is not None:
            for branch in self.conv_kxk:
                w, b = branch.get_kernel_bias()
                kernel += w
                bias += b
        if self.conv_scale is not None:
            w, b = self.conv_scale.get_kernel_bias()
            kernel += F.pad(w, [k // 2] * 4)  # 1x1 -> kxk, centre tap
            bias += b
        if self.identity is not None:
            w, b = fuse_bn_tensor(self.identity, self.in_channels, self.groups, k)
            kernel += w
            bias += b
        return kernel, bias

    def reparameterize(self) -> None:
        """Replace the branches by ``reparam_conv`` (idempotent)."""
        fuse_into_reparam_conv(self, ('conv_kxk', 'conv_scale', 'identity'), self.stride,
                               self.dilation, self.groups)
