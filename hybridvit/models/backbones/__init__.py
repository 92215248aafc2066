"""Backbones registered as ``hybridvit.FastViT``, ``hybridvit.MobileViT``,
``hybridvit.MobileViTv2`` and ``hybridvit.MobileViTv3``."""
from .fastvit import FastViT
from .mobilevit import MobileViT
from .mobilevitv2 import MobileViTv2
from .mobilevitv3 import MobileViTv3

__all__ = ['FastViT', 'MobileViT', 'MobileViTv2', 'MobileViTv3']
