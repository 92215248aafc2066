"""Task heads registered in ``hybridvit.registry.MODELS``."""
from .hand_mesh_head import HandMeshHead
from .mano import MANOLayer, load_mano_params

__all__ = ['HandMeshHead', 'MANOLayer', 'load_mano_params']
