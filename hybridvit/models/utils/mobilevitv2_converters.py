"""Key conversion for MobileViTv2 checkpoints (pure functions, no I/O).

MobileViTv2: https://arxiv.org/abs/2206.02680. Four layouts are recognised from the keys:

* **timm** (``timm.create_model('mobilevitv2_100')``, ``.pth`` / ``.safetensors``): ``stem``,
  ``stages.i.j.conv1_1x1`` / ``conv2_kxk`` / ``conv3_1x1`` (MV2), ``stages.i.1.conv_kxk`` /
  ``conv_1x1`` / ``transformer.k.{norm1,attn.qkv_proj,attn.out_proj,norm2,mlp.fc1,mlp.fc2}`` /
  ``norm`` / ``conv_proj`` (MobileViTv2 block), ``head.fc``; ``features_only`` models write
  ``stages_i``.
* **cvnets** (apple/ml-cvnets ``.pt`` files, https://github.com/apple/ml-cvnets): ``conv_1``,
  ``layer_1..5``, ``block.exp_1x1`` / ``block.conv_3x3`` / ``block.red_1x1`` (MV2),
  ``local_rep.0`` (3x3 depthwise) / ``local_rep.1`` (1x1), ``global_rep.k.pre_norm_attn.{0,1}``
  (norm, ``qkv_proj`` / ``out_proj``), ``global_rep.k.pre_norm_ffn.{0,1,3}``, ``global_rep.L``
  (final norm), ``conv_proj``, ``classifier``; every conv as ``.block.conv`` / ``.block.norm``.
  DeepLabv3 / PSPNet checkpoints prefix the backbone with ``encoder.`` and add ``seg_head``.
* **HF** transformers ``MobileViTV2Model`` / ``...ForSemanticSegmentation``
  (``mobilevitv2.conv_stem``, ``mobilevitv2.encoder.layer.i.{layer.j,downsampling_layer}``,
  ``expand_1x1`` / ``conv_3x3`` / ``reduce_1x1``, ``conv_kxk``, ``conv_1x1``,
  ``transformer.layer.k.{layernorm_before,attention,layernorm_after,ffn.conv1,ffn.conv2}``,
  ``layernorm``, ``conv_projection``; ``.convolution`` / ``.normalization``). The cvnets <-> HF
  correspondence is the rule set of HF's ``mobilevitv2/convert_mlcvnets_to_pytorch.py``.
* **hybridvit** (this package, also BN-fused deploy dicts): unchanged.

Classifier / segmentation-head keys are returned separately (``dropped``); unknown keys pass
through so that a strict load reports them.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch

from .checkpoint import CheckpointMismatchError
from .key_rules import KeyLayout, rename_keys
from .mobilevit_converters import (CVNETS_CONV_RULES, CVNETS_FINAL_NORM_RULE, CVNETS_HEAD,
                                   TIMM_BLOCK_RULES, TIMM_HEAD, detect_timm_or_hybridvit)

__all__ = ['detect_mobilevitv2_format', 'convert_mobilevitv2_state_dict']

StateDict = Dict[str, torch.Tensor]

# timm -> hybridvit (block-level renames as in v1; transformer names are timm's)
_TIMM_RULES = [(re.compile(r'^stages_(\d+)\.'), r'stages.\1.')] + TIMM_BLOCK_RULES

_GR = r'\.global_rep\.(\d+)\.'  # transformer layer k of a MobileViTv2 block
_CVNETS_RULES = CVNETS_CONV_RULES + [
    (re.compile(r'\.conv_3x3\.'), '.dw_conv.'),
    (re.compile(r'\.local_rep\.0\.'), '.conv_local.'),
    (re.compile(r'\.local_rep\.1\.conv\.'), '.conv_embed.'),
    (re.compile(_GR + r'pre_norm_attn\.0\.'), r'.transformer.\1.norm1.'),
    (re.compile(_GR + r'pre_norm_attn\.1\.(qkv_proj|out_proj)\.conv\.'),
     r'.transformer.\1.attn.\2.'),
    (re.compile(_GR + r'pre_norm_ffn\.0\.'), r'.transformer.\1.norm2.'),
    (re.compile(_GR + r'pre_norm_ffn\.1\.conv\.'), r'.transformer.\1.mlp.fc1.'),
    (re.compile(_GR + r'pre_norm_ffn\.3\.conv\.'), r'.transformer.\1.mlp.fc2.'),
    CVNETS_FINAL_NORM_RULE,
]

_HF_RULES = [
    (re.compile(r'\.convolution\.'), '.conv.'),
    (re.compile(r'\.normalization\.'), '.bn.'),
    (re.compile(r'^conv_stem\.'), 'stem.'),
    (re.compile(r'^encoder\.layer\.(\d)\.layer\.(\d+)\.'), r'stages.\1.\2.'),
    (re.compile(r'^encoder\.layer\.(\d)\.downsampling_layer\.'), r'stages.\1.0.'),
    (re.compile(r'^encoder\.layer\.(\d)\.(?!layer\.|downsampling_layer\.)'), r'stages.\1.1.'),
    (re.compile(r'\.expand_1x1\.'), '.expand_conv.'),
    (re.compile(r'\.conv_3x3\.'), '.dw_conv.'),
    (re.compile(r'\.reduce_1x1\.'), '.project_conv.'),
    (re.compile(r'\.1\.conv_kxk\.'), '.1.conv_local.'),
    (re.compile(r'\.1\.conv_1x1\.conv\.'), '.1.conv_embed.'),
    (re.compile(r'\.transformer\.layer\.(\d+)\.layernorm_before\.'), r'.transformer.\1.norm1.'),
    (re.compile(r'\.transformer\.layer\.(\d+)\.attention\.(qkv_proj|out_proj)\.conv\.'),
     r'.transformer.\1.attn.\2.'),
    (re.compile(r'\.transformer\.layer\.(\d+)\.layernorm_after\.'), r'.transformer.\1.norm2.'),
    (re.compile(r'\.transformer\.layer\.(\d+)\.ffn\.conv1\.conv\.'), r'.transformer.\1.mlp.fc1.'),
    (re.compile(r'\.transformer\.layer\.(\d+)\.ffn\.conv2\.conv\.'), r'.transformer.\1.mlp.fc2.'),
    (re.compile(r'\.1\.layernorm\.'), '.1.norm.'),
    (re.compile(r'\.1\.conv_projection\.'), '.1.conv_proj.'),
]
_HF_HEAD = re.compile(r'^(classifier|segmentation_head)\.')


_LAYOUTS = {
    'timm': KeyLayout(_TIMM_RULES, TIMM_HEAD),
    'cvnets': KeyLayout(_CVNETS_RULES, CVNETS_HEAD, strip=r'^encoder\.'),
    'hf': KeyLayout(_HF_RULES, _HF_HEAD, strip=r'^mobilevitv2\.'),
}


def detect_mobilevitv2_format(state_dict: StateDict) -> str:
    """Return ``'timm'``, ``'cvnets'``, ``'hf'`` or ``'hybridvit'`` for a MobileViTv2 state dict.

    Raises:
        CheckpointMismatchError: no key identifies a MobileViTv2 layout (the message says when
            the file is a MobileViT v1 checkpoint).
    """
    keys = list(state_dict)
    if any(re.search(r'\.(pre_norm_mha|attn\.qkv)\.', k) for k in keys):
        raise CheckpointMismatchError(
            'this is a MobileViT v1 checkpoint (multi-head attention keys "pre_norm_mha" / '
            '"attn.qkv"): use hybridvit.MobileViT')
    if any(re.match(r'^(mobilevitv2\.)?(conv_stem|encoder\.layer)\.', k) for k in keys):
        return 'hf'
    if any(re.search(r'\.pre_norm_attn\.', k) for k in keys) or any(
            re.match(r'^(encoder\.)?(conv_1|layer_\d)\.', k) for k in keys):
        return 'cvnets'
    return detect_timm_or_hybridvit(
        state_dict, 'unrecognised MobileViTv2 checkpoint layout: expected timm (stem, '
        'stages.i.j.conv1_1x1 ...), cvnets (conv_1, layer_1..5 ...), HF (mobilevitv2.conv_stem, '
        'encoder.layer ...) or hybridvit keys')


def convert_mobilevitv2_state_dict(state_dict: StateDict
                                   ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Convert a timm / cvnets / HF / hybridvit MobileViTv2 state dict to hybridvit names.

    Args:
        state_dict: flat state dict (``module.`` / wrapper dicts already removed, e.g. by
            :func:`~hybridvit.models.utils.checkpoint.read_state_dict`).

    Returns:
        ``(converted, dropped)``: the converted dict (tensors shared, not copied) and the
        original names of the classifier / segmentation-head keys left out.

    Raises:
        CheckpointMismatchError: unknown layout, a MobileViT v1 checkpoint, or colliding keys.
    """
    return rename_keys(state_dict, _LAYOUTS.get(detect_mobilevitv2_format(state_dict)))
