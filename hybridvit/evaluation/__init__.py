"""Evaluation: importing this package registers the hybridvit metrics."""
from .functional import hand_mesh_metrics
from .metrics import HandMeshMetric

__all__ = ['HandMeshMetric', 'hand_mesh_metrics']
