"""Task models (backbone + head) registered in ``hybridvit.registry.MODELS``."""
from .hand_mesh_estimator import HandMeshEstimator

__all__ = ['HandMeshEstimator']
