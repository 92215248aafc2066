"""Reparameterisable large-kernel conv (large kxk conv-BN + parallel small conv-BN).

Paper: "Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs" (RepLKNet),
Ding et al., CVPR 2022, https://arxiv.org/abs/2203.06717; used by FastViT
(https://arxiv.org/abs/2303.14189, https://github.com/apple/ml-fastvit
``models/modules/replknet.py``) as the downsampling conv. Names follow timm
(``large_conv``, ``small_conv``, ``reparam_conv``).
"""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from timm.layers import SqueezeExcite
from torch import nn

from hybridvit.utils.errors import UserError
from .conv_bn import ConvBN, build_act, conv_kernel_bias, fuse_into_reparam_conv

__all__ = ['ReparamLargeKernelConv']


class ReparamLargeKernelConv(nn.Module):
    """Large-kernel conv-BN plus a small-kernel conv-BN branch, fusable into one conv.

    See `RepLKNet <https://arxiv.org/abs/2203.06717>`_. Both branches share stride, dilation
    and groups; the fused kernel is the large kernel plus the small kernel zero-padded to
    the large size (valid at any dilation because both kernels are centred).

    NOTE: the official FastViT code computes an activation after this conv and discards
    it, so the released weights expect no activation here; ``act_cfg`` therefore
    defaults to ``None``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: large kernel size (odd).
        stride: stride of both branches.
        groups: conv groups (FastViT: ``in_channels``).
        small_kernel: small kernel size (odd, <= ``kernel_size``) or ``None`` for no branch.
        dilation: dilation of both branches (kept by the fused conv).
        norm_cfg: mmcv config of both branches' BatchNorms.
        act_cfg: mmcv activation config after the sum, ``None`` for none.
        use_se: squeeze-excite after the sum, before the activation (timm's ``SqueezeExcite``,
            reduction 1/4, ReLU / sigmoid; MobileCLIP's MCi downsamplings); not fused.
        deploy: build only ``reparam_conv``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, small_kernel: Optional[int] = 3, dilation: int = 1,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Optional[Dict] = None,
                 use_se: bool = False, deploy: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise UserError(f'ReparamLargeKernelConv: kernel_size must be odd, got {kernel_size}')
        if small_kernel is not None and (small_kernel > kernel_size or small_kernel % 2 != 1):
            raise UserError(f'ReparamLargeKernelConv: small_kernel must be odd and <= '
                            f'kernel_size ({kernel_size}), got {small_kernel}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.small_kernel = small_kernel
        self.stride = stride
        self.groups = groups
        self.dilation = dilation
        self.deploy = deploy

        self.reparam_conv = None
        self.large_conv = None
        self.small_conv = None
        if deploy:
            self.reparam_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                          padding=dilation * (kernel_size // 2),
                                          dilation=dilation, groups=groups, bias=True)
        else:
            self.large_conv = ConvBN(in_channels, out_channels, kernel_size, stride=stride,
                                     dilation=dilation, groups=groups, norm_cfg=norm_cfg)
            if small_kernel is not None:
                self.small_conv = ConvBN(in_channels, out_channels, small_kernel,
                                         stride=stride, dilation=dilation, groups=groups,
                                         norm_cfg=norm_cfg)
        self.se = SqueezeExcite(out_channels, rd_ratio=0.25) if use_se else nn.Identity()
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.act(self.se(self.reparam_conv(x)))
        out = self.large_conv(x)
        if self.small_conv is not None:
            out = out + self.small_conv(x)
        return self.act(self.se(out))

    @torch.no_grad()
    def get_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the equivalent single conv."""
        if self.reparam_conv is not None:
            return conv_kernel_bias(self.reparam_conv)
        kernel, bias = self.large_conv.get_kernel_bias()
        if self.small_conv is not None:
            small_w, small_b = self.small_conv.get_kernel_bias()
            pad = (self.kernel_size - self.small_kernel) // 2
            kernel = kernel + F.pad(small_w, [pad] * 4)
            bias = bias + small_b
        return kernel, bias

    def reparameterize(self) -> None:
        """Replace both branches by ``reparam_conv`` (idempotent)."""
        fuse_into_reparam_conv(self, ('large_conv', 'small_conv'), self.stride, self.dilation,
                               self.groups)
