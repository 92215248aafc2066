"""Convolution + BatchNorm (+ activation) with BN folding for deployment.

The BN-folding arithmetic is the one used throughout structural reparameterisation
(RepVGG, arXiv 2101.03697; MobileOne, arXiv 2206.04040; FastViT, arXiv 2303.14189 and
https://github.com/apple/ml-fastvit):
``w' = w * gamma / std``, ``b' = beta + (b - mean) * gamma / std``.
"""
from typing import Optional, Tuple, Type

import torch
from torch import nn

__all__ = ['ConvNormAct', 'ConvBN', 'fuse_conv_bn_weights', 'fuse_bn_tensor', 'get_padding',
           'identity_kernel', 'build_fused_conv']


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding for an odd ``kernel_size`` at ``dilation``."""
    return dilation * (kernel_size - 1) // 2


def fuse_conv_bn_weights(weight: torch.Tensor, bias: Optional[torch.Tensor],
                         bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold ``bn`` (eval statistics) into a conv ``weight`` / ``bias``.

    Returns:
        (fused weight, fused bias); the weight keeps its shape ``(out, in/groups, k, k)``.
    """
    std = (bn.running_var + bn.eps).sqrt()
    scale = bn.weight / std if bn.affine else 1.0 / std
    shift = bn.bias if bn.affine else torch.zeros_like(std)
    conv_bias = bias if bias is not None else torch.zeros_like(std)
    fused_w = weight * scale.reshape(-1, 1, 1, 1)  # (out, in/groups, k, k)
    fused_b = shift + (conv_bias - bn.running_mean) * scale
    return fused_w, fused_b


def identity_kernel(channels: int, groups: int, kernel_size: int,
                    like: torch.Tensor) -> torch.Tensor:
    """Kernel ``(channels, channels // groups, k, k)`` of a conv that returns its input.

    A single 1 sits at the centre tap of each output channel's own input channel, so the
    kernel is the identity for any dilation.
    """
    in_per_group = channels // groups
    kernel = torch.zeros(channels, in_per_group, kernel_size, kernel_size,
                         dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    kernel[idx, idx % in_per_group, kernel_size // 2, kernel_size // 2] = 1.0
    return kernel


def build_fused_conv(weight: torch.Tensor, bias: torch.Tensor, stride=1, dilation=1,
                     groups: int = 1, training: bool = True) -> nn.Conv2d:
    """A biased 'same'-padded ``nn.Conv2d`` holding ``weight`` / ``bias`` (no grad history)."""
    out_channels, in_per_group, kh, kw = weight.shape
    dilation = dilation if isinstance(dilation, int) else dilation[0]
    conv = nn.Conv2d(in_per_group * groups, out_channels, (kh, kw), stride=stride,
                     padding=(get_padding(kh, dilation), get_padding(kw, dilation)),
                     dilation=dilation, groups=groups, bias=True, device=weight.device,
                     dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv.train(training)


def fuse_bn_tensor(bn: nn.BatchNorm2d, in_channels: int, groups: int,
                   kernel_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of a BN-only identity branch, as a ``kernel_size`` conv of ``groups``.

    The identity is written as a kernel with a single 1 at the centre tap of each channel's
    own input, then ``bn`` is folded into it.
    """
    kernel = identity_kernel(in_channels, groups, kernel_size, bn.running_mean)
    return fuse_conv_bn_weights(kernel, None, bn)


class ConvNormAct(nn.Module):
    """Conv2d -> BatchNorm2d -> activation, fusable into a single biased Conv2d.

    The conv uses 'same' padding ``dilation * (kernel_size - 1) // 2``. After
    :meth:`reparameterize` (or with ``deploy=True``) the module holds only ``conv`` (with
    bias) and ``act``; ``bn`` is ``None``. Fusion follows RepVGG / MobileOne
    (https://arxiv.org/abs/2206.04040).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel size (odd).
        stride: conv stride.
        dilation: conv dilation (kept by the fused conv).
        groups: conv groups.
        bias: give the training-time conv a bias (folded into the fused bias).
        act_layer: activation class (e.g. ``nn.SiLU``, ``nn.GELU``) or ``None`` for identity.
        deploy: build only the fused conv (for loading fused checkpoints).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = False,
                 act_layer: Optional[Type[nn.Module]] = nn.SiLU, deploy: bool = False):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'in_channels ({in_channels}) and out_channels ({out_channels}) '
                             f'must be divisible by groups ({groups})')
        self.deploy = deploy
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=get_padding(kernel_size, dilation), dilation=dilation,
                              groups=groups, bias=bias or deploy)
        self.bn = None if deploy else nn.BatchNorm2d(out_channels)
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def get_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the equivalent single conv (fused or not); no side effects."""
        conv = self.conv
        if self.bn is None:
            bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(
                conv.out_channels)
            return conv.weight.detach().clone(), bias.detach().clone()
        return fuse_conv_bn_weights(conv.weight, conv.bias, self.bn)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold ``bn`` into ``conv`` (idempotent)."""
        if self.bn is None:
            self.deploy = True
            return
        conv = self.conv
        weight, bias = self.get_kernel_bias()
        self.conv = build_fused_conv(weight, bias, conv.stride, conv.dilation, conv.groups,
                                     training=conv.training)
        self.bn = None
        self.deploy = True


class ConvBN(ConvNormAct):
    """:class:`ConvNormAct` without activation (``act_layer=None`` by default)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = False,
                 act_layer: Optional[Type[nn.Module]] = None, deploy: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         dilation=dilation, groups=groups, bias=bias, act_layer=act_layer,
                         deploy=deploy)
