"""Fold a backbone's per-output BatchNorms into the FPN lateral 1x1 convs that consume them.

FastViT (https://arxiv.org/abs/2303.14189) puts one BatchNorm on every dense-prediction output
(``norm0``..``norm3``). A BatchNorm in eval mode is a per-channel affine map ``a * x + c``; when
its only consumer is a 1x1 conv without padding (the lateral convs of mmdet / mmseg ``FPN``),
``W (a x + c) + b = (W a) x + (W c + b)``, so the norm disappears from the deployed graph (ONNX
Runtime cannot fold a BatchNorm into a *following* conv itself). Outputs are unchanged.
"""
from typing import List

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hybridvit.models.layers.conv_bn import bn_scale_shift

__all__ = ['fold_output_norms']


def _affine(bn: _BatchNorm):
    return bn_scale_shift(bn.running_mean, bn.running_var, bn.weight if bn.affine else None,
                          bn.bias if bn.affine else None, bn.eps)


@torch.no_grad()
def _fold_into_conv(bn: _BatchNorm, conv: nn.Conv2d) -> None:
    scale, shift = _affine(bn)
    weight = conv.weight  # (out, in, 1, 1)
    bias = conv.bias if conv.bias is not None else torch.zeros(weight.shape[0])
    new_bias = bias + (weight[:, :, 0, 0] * shift[None, :]).sum(dim=1)
    conv.weight.copy_(weight * scale[None, :, None, None])
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)


def _foldable_conv(module: nn.Module):
    conv = getattr(module, 'conv', module)
    if (isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), 0)):
        return conv
    return None


def fold_output_norms(model: nn.Module) -> List[int]:
    """Fold ``model.backbone.norm{i}`` into ``model.neck.lateral_convs`` in place (eval only).

    Applies to models with a backbone that has ``out_norm`` / ``out_indices`` (FastViT) and an
    FPN-like neck with ``lateral_convs`` and ``start_level``; skipped for an output the neck also
    reads directly (``add_extra_convs='on_input'``). Returns the folded stage indices.
    """
    backbone = getattr(model, 'backbone', None)
    neck = getattr(model, 'neck', None)
    if isinstance(neck, (nn.Sequential, nn.ModuleList)):
        return []  # several necks: not a plain FPN
    if not (getattr(backbone, 'out_norm', False) and hasattr(backbone, 'out_indices')
            and hasattr(neck, 'lateral_convs')):
        return []
    start = getattr(neck, 'start_level', 0)
    raw_last = getattr(neck, 'add_extra_convs', False) == 'on_input'
    end = getattr(neck, 'backbone_end_level', len(backbone.out_indices))
    folded = []
    for pos, stage in enumerate(backbone.out_indices):
        lateral = pos - start
        if not 0 <= lateral < len(neck.lateral_convs) or (raw_last and pos == end - 1):
            continue
        bn = getattr(backbone, f'norm{stage}', None)
        conv = _foldable_conv(neck.lateral_convs[lateral])
        if not isinstance(bn, _BatchNorm) or conv is None:
            continue
        _fold_into_conv(bn, conv)
        setattr(backbone, f'norm{stage}', nn.Identity())
        folded.append(stage)
    return folded
