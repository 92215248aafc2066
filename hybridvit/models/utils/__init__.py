"""Model utilities: reparameterisation and checkpoint handling."""
from .checkpoint import CheckpointMismatchError, load_state_dict_strictly, read_state_dict

__all__ = ['CheckpointMismatchError', 'load_state_dict_strictly', 'read_state_dict']
