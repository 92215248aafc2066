"""Model utilities: reparameterisation and checkpoint handling."""
from .checkpoint import CheckpointMismatchError, load_state_dict_strictly, read_state_dict
from .fastvit_converters import convert_fastvit_state_dict
from .mobilevit_converters import convert_mobilevit_state_dict
from .mobilevitv2_converters import convert_mobilevitv2_state_dict
from .reparameterize import reparameterize_model

__all__ = ['CheckpointMismatchError', 'load_state_dict_strictly', 'read_state_dict',
           'reparameterize_model', 'convert_fastvit_state_dict', 'convert_mobilevit_state_dict',
           'convert_mobilevitv2_state_dict']
