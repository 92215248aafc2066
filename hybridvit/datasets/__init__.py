"""Datasets, transforms and samplers: importing this package registers them."""
from .freihand import FreiHANDDataset
from .samplers import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403

__all__ = ['FreiHANDDataset']
