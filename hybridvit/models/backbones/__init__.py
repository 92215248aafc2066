"""Backbones registered as ``hybridvit.FastViT`` and ``hybridvit.MobileViT``."""
from .fastvit import FastViT
from .mobilevit import MobileViT

__all__ = ['FastViT', 'MobileViT']
