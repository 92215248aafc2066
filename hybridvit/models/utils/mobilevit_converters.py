"""Key conversion for MobileViT v1 checkpoints (pure functions, no I/O).

Three layouts are recognised from the keys:

* **timm** (``timm.create_model('mobilevit_xxs')``): ``stem``, ``stages.i.j.conv1_1x1`` /
  ``conv2_kxk`` / ``conv3_1x1`` (MV2), ``stages.i.1.conv_kxk`` / ``conv_1x1`` /
  ``transformer.k`` / ``norm`` / ``conv_proj`` / ``conv_fusion`` (MobileViT block),
  ``final_conv``, ``head.fc``.
* **cvnets** (apple/ml-cvnets ``.pt`` files, https://github.com/apple/ml-cvnets): ``conv_1``,
  ``layer_1..5``, ``exp_1x1`` / ``conv_3x3`` / ``red_1x1``, ``local_rep.conv_3x3`` /
  ``local_rep.conv_1x1``, ``global_rep.k.pre_norm_mha.{0,1}`` (LayerNorm, fused
  ``qkv_proj`` + ``out_proj``), ``global_rep.k.pre_norm_ffn.{0,1,4}``, ``global_rep.L``
  (final LayerNorm), ``conv_proj``, ``fusion``, ``conv_1x1_exp``, ``classifier``; every conv
  unit as ``.block.conv`` / ``.block.norm``. DeepLabv3 checkpoints prefix the backbone with
  ``encoder.`` and add ``seg_head``. The names follow cvnets' source and the tested rule set
  of HF transformers' ``convert_mlcvnets_to_pytorch.py``; cvnets' fused qkv is laid out
  ``[q, k, v]`` like ours, so it is kept fused.
* **hybridvit** (this package, also BN-fused deploy dicts): unchanged.

Classifier / segmentation-head keys are returned separately (``dropped``) so the loader can
log them; unknown keys are passed through so that a strict load reports them.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from .checkpoint import CheckpointMismatchError
from .key_rules import KeyLayout, rename_keys

__all__ = ['detect_mobilevit_format', 'convert_mobilevit_state_dict']

# The rules below without a leading underscore are shared with the MobileViTv2 converter,
# whose timm and cvnets layouts name the MV2 blocks and conv units the same way.
TIMM_KEY = re.compile(r'\.(conv1_1x1|conv2_kxk|conv3_1x1|conv_kxk|conv_1x1)\.')
HYBRIDVIT_KEY = re.compile(r'\.(expand_conv|dw_conv|project_conv|conv_local|conv_embed)\.')

TIMM_BLOCK_RULES = [
    (re.compile(r'^(stages\.\d+\.\d+\.)conv1_1x1\.'), r'\1expand_conv.'),
    (re.compile(r'^(stages\.\d+\.\d+\.)conv2_kxk\.'), r'\1dw_conv.'),
    (re.compile(r'^(stages\.\d+\.\d+\.)conv3_1x1\.'), r'\1project_conv.'),
    (re.compile(r'^(stages\.\d+\.\d+\.)conv_kxk\.'), r'\1conv_local.'),
    (re.compile(r'^(stages\.\d+\.\d+\.)conv_1x1\.'), r'\1conv_embed.'),
]
TIMM_HEAD = re.compile(r'^head\.')

# cvnets conv units (".block.conv" / ".block.norm"), stem, stages and MV2 1x1 convs
CVNETS_CONV_RULES = [
    (re.compile(r'\.block\.'), '.'),
    # ".block.norm." -> ".bn." (cvnets LayerNorms are never named "norm")
    (re.compile(r'\.norm\.(weight|bias|running_mean|running_var|num_batches_tracked)$'),
     r'.bn.\1'),
    (re.compile(r'^conv_1\.'), 'stem.'),
    (re.compile(r'^layer_(\d)\.'), lambda m: f'stages.{int(m.group(1)) - 1}.'),
    (re.compile(r'\.exp_1x1\.'), '.expand_conv.'),
    (re.compile(r'\.red_1x1\.'), '.project_conv.'),
]
CVNETS_HEAD = re.compile(r'^(classifier|seg_head|aux_head)\.')
CVNETS_FINAL_NORM_RULE = (re.compile(r'\.global_rep\.\d+\.(weight|bias)$'), r'.norm.\1')

_GR = r'\.global_rep\.(\d+)\.'  # transformer layer k of a MobileViT block
_CVNETS_RULES = CVNETS_CONV_RULES + [
    (re.compile(r'^conv_1x1_exp\.'), 'final_conv.'),
    (re.compile(r'\.local_rep\.conv_3x3\.'), '.conv_local.'),
    (re.compile(r'\.local_rep\.conv_1x1\.conv\.'), '.conv_embed.'),
    (re.compile(r'\.conv_3x3\.'), '.dw_conv.'),
    (re.compile(_GR + r'pre_norm_mha\.0\.'), r'.transformer.\1.norm1.'),
    (re.compile(_GR + r'pre_norm_mha\.1\.qkv_proj\.'), r'.transformer.\1.attn.qkv.'),
    (re.compile(_GR + r'pre_norm_mha\.1\.out_proj\.'), r'.transformer.\1.attn.proj.'),
    (re.compile(_GR + r'pre_norm_ffn\.0\.'), r'.transformer.\1.norm2.'),
    (re.compile(_GR + r'pre_norm_ffn\.1\.'), r'.transformer.\1.mlp.fc1.'),
    (re.compile(_GR + r'pre_norm_ffn\.4\.'), r'.transformer.\1.mlp.fc2.'),
    CVNETS_FINAL_NORM_RULE,
    (re.compile(r'\.fusion\.'), '.conv_fusion.'),
]

_LAYOUTS = {
    'timm': KeyLayout(TIMM_BLOCK_RULES, TIMM_HEAD),
    'cvnets': KeyLayout(_CVNETS_RULES, CVNETS_HEAD, strip=r'^encoder\.'),
}


def detect_mobilevit_format(state_dict: Dict[str, torch.Tensor]) -> str:
    """Return ``'timm'``, ``'cvnets'`` or ``'hybridvit'`` for a MobileViT v1 state dict.

    Raises:
        CheckpointMismatchError: if no key identifies one of the three layouts.
    """
    keys = [re.sub(r'^encoder\.', '', k) for k in state_dict]
    if any(re.match(r'^(layer_\d\.|conv_1\.|conv_1x1_exp\.)', k) for k in keys):
        return 'cvnets'
    return detect_timm_or_hybridvit(
        state_dict, 'unrecognised MobileViT v1 checkpoint layout: expected timm (stages.i.j.'
        'conv1_1x1...), cvnets (conv_1, layer_1..5, ...) or hybridvit keys')


def detect_timm_or_hybridvit(state_dict: Dict[str, torch.Tensor], unrecognised: str) -> str:
    """``'timm'`` or ``'hybridvit'`` from the MV2 / MobileViT block names that v1 and v2 share
    (the last step of both format detections).

    Raises:
        CheckpointMismatchError: neither layout: ``unrecognised`` and the first keys.
    """
    keys = list(state_dict)
    if any(TIMM_KEY.search(k) for k in keys):
        return 'timm'
    if any(HYBRIDVIT_KEY.search(k) for k in keys):
        return 'hybridvit'
    raise CheckpointMismatchError(f'{unrecognised}, got {keys[:6]}')


def convert_mobilevit_state_dict(
        state_dict: Dict[str, torch.Tensor]) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Convert a timm / cvnets / hybridvit MobileViT v1 state dict to hybridvit names.

    Args:
        state_dict: flat state dict (``module.`` / wrapper dicts already removed, e.g. by
            :func:`~hybridvit.models.utils.checkpoint.read_state_dict`).

    Returns:
        ``(converted, dropped)``: the converted dict (tensors are shared, not copied) and the
        original names of the classifier / segmentation-head keys that were left out.

    Raises:
        CheckpointMismatchError: if the layout is not recognised or two keys collide after
            conversion.
    """
    return rename_keys(state_dict, _LAYOUTS.get(detect_mobilevit_format(state_dict)))
