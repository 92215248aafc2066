"""Task models (backbone + head) registered in ``hybridvit.registry.MODELS``."""
from .hand_mesh_estimator import HandMeshEstimator
from .hand_mesh_tta import HandMeshTTAModel

__all__ = ['HandMeshEstimator', 'HandMeshTTAModel']
