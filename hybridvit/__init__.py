"""hybridvit: FastViT / MobileViT backbones for OpenMMLab dense prediction."""
from . import compat  # noqa: F401  (torch 2.6+ checkpoint loading for mmengine 0.10)
from .version import __version__

__all__ = ['__version__']
