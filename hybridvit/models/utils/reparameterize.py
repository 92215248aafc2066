"""Structural reparameterisation of whole models (RepVGG / MobileOne / FastViT style).

Every multi-branch block in hybridvit (``MobileOneBlock``, ``ReparamLargeKernelConv``,
``RepMixer``, ``RepCPE``, ``ConvNormAct`` ...) has an idempotent ``reparameterize()``;
this module walks any ``nn.Module`` (a backbone, an mmdet detector, an mmseg segmentor) and
calls it. Idea from RepVGG (https://arxiv.org/abs/2101.03697) and timm's
``reparameterize_model`` (``timm/utils/model.py``).
"""
import copy

from torch import nn

__all__ = ['reparameterize_model']


def _fuse(module: nn.Module) -> None:
    # Pre-order: a block fuses its own branches first; then we descend into what is left
    # (the fused conv, or sub-blocks it does not handle itself).
    fuse = getattr(module, 'reparameterize', None)
    if callable(fuse):
        fuse()
    for child in list(module.children()):
        _fuse(child)


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fuse every reparameterisable block of ``model`` for inference.

    Calls ``reparameterize()`` on every sub-module that has one (parents before
    children), then sets ``deploy = True`` on every module with a boolean ``deploy``
    attribute (e.g. :class:`hybridvit.FastViT`). Train/eval mode is left as it was; newly
    created fused convs take their parent's mode. Outputs are unchanged in eval mode.

    Args:
        model: any model containing reparameterisable blocks.
        inplace: fuse ``model`` itself; otherwise fuse and return a deep copy.

    Returns:
        The fused model (``model`` itself when ``inplace``).
    """
    if not inplace:
        model = copy.deepcopy(model)
    modes = {id(m): m.training for m in model.modules()}
    _fuse(model)
    for parent in model.modules():
        for child in parent.children():
            if id(child) in modes:
                child.training = modes[id(child)]
            else:  # created by the fusion
                child.train(parent.training)
        if isinstance(getattr(parent, 'deploy', None), bool):
            parent.deploy = True
    return model
