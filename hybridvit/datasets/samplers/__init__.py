"""Samplers: MobileViT's multi-scale variable-batch sampler."""
from .multiscale import MultiScaleBatchSampler, MultiScaleDataset, scaled_batch_size

__all__ = ['MultiScaleBatchSampler', 'MultiScaleDataset', 'scaled_batch_size']
