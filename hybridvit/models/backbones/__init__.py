"""Backbones registered as ``hybridvit.FastViT`` and ``hybridvit.MobileViT``."""
