"""Task heads registered in ``hybridvit.registry.MODELS``."""
from .hand_mesh_head import HandMeshHead
from .mano import MANOLayer, load_mano_params
from .ssd_head import SSDHead

__all__ = ['HandMeshHead', 'MANOLayer', 'SSDHead', 'load_mano_params']
