"""Convolution + BatchNorm (+ activation) with BN folding for deployment.

The BN-folding arithmetic is the one used throughout structural reparameterisation
(RepVGG, arXiv 2101.03697; MobileOne, arXiv 2206.04040; FastViT, arXiv 2303.14189 and
https://github.com/apple/ml-fastvit):
``w' = w * gamma / std``, ``b' = beta + (b - mean) * gamma / std``.
"""
import re
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmcv.cnn import build_activation_layer, build_norm_layer
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.utils.errors import UserError

__all__ = ['ConvNormAct', 'ConvBN', 'bn_scale_shift', 'fuse_conv_bn_weights',
           'fuse_bn_state_dict', 'fuse_bn_tensor', 'get_padding',
           'identity_kernel', 'build_fused_conv', 'build_norm', 'build_act',
           'conv_kernel_bias', 'fuse_into_reparam_conv']


def build_norm(norm_cfg: Dict, channels: int) -> nn.Module:
    """A norm layer from an mmcv config (``dict(type='BN')``, ``'SyncBN'``, ``'GN'`` ...)."""
    return build_norm_layer(norm_cfg, channels)[1]


def build_act(act_cfg: Optional[Dict]) -> nn.Module:
    """An activation from an mmcv config (``dict(type='GELU')``), identity for ``None``."""
    return build_activation_layer(act_cfg) if act_cfg is not None else nn.Identity()


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding for an odd ``kernel_size`` at ``dilation``."""
    return dilation * (kernel_size - 1) // 2


def bn_scale_shift(running_mean: torch.Tensor, running_var: torch.Tensor,
                   weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                   eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The affine map of an eval-mode BatchNorm: ``bn(x) = x * scale + shift`` per channel.

    This is the one implementation of the BN arithmetic behind every fold in hybridvit
    (conv-BN fusion, state-dict folding, folding an output norm into the next conv).
    ``weight`` / ``bias`` are ``None`` for a BN without affine parameters.
    """
    scale = (running_var + eps).rsqrt()
    if weight is not None:
        scale = weight * scale
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


def fuse_conv_bn_weights(weight: torch.Tensor, bias: Optional[torch.Tensor],
                         bn: nn.BatchNorm2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold ``bn`` (eval statistics) into a conv ``weight`` / ``bias``.

    Returns:
        (fused weight, fused bias); the weight keeps its shape ``(out, in/groups, k, k)``.
    """
    scale, shift = bn_scale_shift(bn.running_mean, bn.running_var,
                                  bn.weight if bn.affine else None,
                                  bn.bias if bn.affine else None, bn.eps)
    fused_w = weight * scale.reshape(-1, 1, 1, 1)  # (out, in/groups, k, k)
    fused_b = shift if bias is None else shift + bias * scale
    return fused_w, fused_b


@torch.no_grad()
def fuse_bn_state_dict(state_dict: Dict[str, torch.Tensor], eps: float = 1e-5,
                       only: Optional[str] = None) -> 'OrderedDict[str, torch.Tensor]':
    """Fold every ``P.bn.*`` group into ``P.conv.weight`` / ``P.conv.bias`` of a state dict.

    The state-dict counterpart of :meth:`ConvNormAct.reparameterize` (same arithmetic): it
    turns the weights of an unfused model into those of its ``deploy=True`` twin without
    building a model (offline converters; fused official checkpoints whose ConvFFN keeps its BN).

    Args:
        state_dict: hybridvit-named tensors.
        eps: the BatchNorm epsilon (``nn.BatchNorm2d``'s default, used by timm and cvnets).
        only: a regular expression; fold only the prefixes ``P`` it matches (``re.search``).

    Raises:
        UserError: a ``P.bn`` group without its ``P.conv.weight`` (the checkpoint does not
            have the layout this function expects).
    """
    pattern = re.compile(only) if only else None
    prefixes = [k[:-len('bn.running_mean')] for k in state_dict
                if k.endswith('.bn.running_mean') or k == 'bn.running_mean']
    prefixes = [p for p in prefixes if pattern is None or pattern.search(p)]
    fused: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    bn_keys = set()
    for prefix in prefixes:
        weight_key = prefix + 'conv.weight'
        if weight_key not in state_dict:
            raise UserError(f'cannot fold "{prefix}bn" into a conv: the state dict has no '
                            f'"{weight_key}"')
        weight = state_dict[weight_key]
        scale, shift = bn_scale_shift(
            state_dict[prefix + 'bn.running_mean'].float(),
            state_dict[prefix + 'bn.running_var'].float(),
            _float_or_none(state_dict.get(prefix + 'bn.weight')),
            _float_or_none(state_dict.get(prefix + 'bn.bias')), eps)
        bias = state_dict.get(prefix + 'conv.bias')
        fused[weight_key] = (weight.float() * scale.reshape(-1, 1, 1, 1)).to(weight.dtype)
        fused_bias = shift if bias is None else shift + bias.float() * scale
        fused[prefix + 'conv.bias'] = fused_bias.to(weight.dtype)
        bn_keys.update(k for k in state_dict if k.startswith(prefix + 'bn.'))
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    for key, value in state_dict.items():
        if key not in bn_keys:
            out[key] = fused.pop(key, value)
    out.update(fused)  # conv biases that did not exist before
    return out


def _float_or_none(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.float()


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


def conv_kernel_bias(conv: nn.Conv2d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Copies of a conv's weight and bias (zeros when it has none), detached."""
    bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
    return conv.weight.detach().clone(), bias.detach().clone()


@torch.no_grad()
def fuse_into_reparam_conv(block: nn.Module, branches: Sequence[str], stride=1, dilation=1,
                           groups: int = 1) -> None:
    """The ``reparameterize()`` of every multi-branch block (idempotent).

    Builds ``block.reparam_conv`` from ``block.get_kernel_bias()`` (same stride, dilation and
    groups as the branches), removes the training-time ``branches`` (attribute names) and sets
    ``block.deploy``.
    """
    if block.reparam_conv is None:
        kernel, bias = block.get_kernel_bias()
        block.reparam_conv = build_fused_conv(kernel, bias, stride, dilation, groups,
                                              training=block.training)
        for name in branches:
            setattr(block, name, None)
    block.deploy = True


def fuse_bn_tensor(bn: nn.BatchNorm2d, in_channels: int, groups: int,
                   kernel_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of a BN-only identity branch, as a ``kernel_size`` conv of ``groups``.

    The identity is written as a kernel with a single 1 at the centre tap of each channel's
    own input, then ``bn`` is folded into it.
    """
    kernel = identity_kernel(in_channels, groups, kernel_size, bn.running_mean)
    return fuse_conv_bn_weights(kernel, None, bn)


class ConvNormAct(nn.Module):
    """Conv2d -> BatchNorm -> activation, fusable into a single biased Conv2d.

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
        norm_cfg: mmcv norm config of a BatchNorm kind (``BN``, ``SyncBN``: foldable).
        act_cfg: mmcv activation config (e.g. ``dict(type='SiLU')``) or ``None`` for identity.
        deploy: build only the fused conv (for loading fused checkpoints).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = False,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Optional[Dict] = dict(type='SiLU'),
                 deploy: bool = False):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise UserError(f'ConvNormAct: in_channels ({in_channels}) and out_channels '
                            f'({out_channels}) must be divisible by groups ({groups})')
        self.deploy = deploy
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=get_padding(kernel_size, dilation), dilation=dilation,
                              groups=groups, bias=bias or deploy)
        self.bn = None if deploy else build_norm(norm_cfg, out_channels)
        if self.bn is not None and not isinstance(self.bn, _BatchNorm):
            raise UserError(f'ConvNormAct folds a BatchNorm; norm_cfg {norm_cfg} builds a '
                            f'{type(self.bn).__name__}')
        self.act = build_act(act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    @torch.no_grad()
    def get_kernel_bias(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the equivalent single conv (fused or not); no side effects."""
        if self.bn is None:
            return conv_kernel_bias(self.conv)
        return fuse_conv_bn_weights(self.conv.weight, self.conv.bias, self.bn)

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
    """:class:`ConvNormAct` without activation (``act_cfg=None`` by default)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = False,
                 norm_cfg: Dict = dict(type='BN'), act_cfg: Optional[Dict] = None,
                 deploy: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         dilation=dilation, groups=groups, bias=bias, norm_cfg=norm_cfg,
                         act_cfg=act_cfg, deploy=deploy)
