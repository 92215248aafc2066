"""mmengine metrics registered in ``hybridvit.registry.METRICS``."""
from .hand_mesh_metric import HandMeshMetric

__all__ = ['HandMeshMetric']
