"""Data transforms: importing this package registers them in ``hybridvit.registry.TRANSFORMS``."""
from .hand_transforms import (HandColorJitter, HandCropResize, HandRandomRotate, HandRotate,
                              LoadHandImage, PackHandMeshInputs, to_bgr_uint8)

__all__ = ['HandColorJitter', 'HandCropResize', 'HandRandomRotate', 'HandRotate',
           'LoadHandImage', 'PackHandMeshInputs', 'to_bgr_uint8']
