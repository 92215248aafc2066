"""Pure key-mapping functions between FastViT checkpoint layouts.

Layouts (REFERENCE §4; FastViT: https://arxiv.org/abs/2303.14189):

* ``official``: apple/ml-fastvit (``patch_embed``, flat ``network.N`` list with the
  downsampling ``PatchEmbed`` at N = 1, 3, 5 and, for SA/MA, the ``RepCPE`` at N = 6 before
  stage 4; ``rbr_conv`` / ``rbr_scale`` / ``rbr_skip``, ``lkb_origin`` / ``small_conv`` /
  ``lkb_reparam``, ``convffn``, ``layer_scale`` parameters, ``conv_exp``, ``head``,
  ``dist_head``).
* ``timm``: ``timm.models.fastvit`` (``stem``, ``stages.S.{downsample.proj, pos_emb, blocks}``,
  ``conv_kxk`` / ``conv_scale`` / ``identity``, ``large_conv``, ``mlp``,
  ``layer_scale.gamma``, ``final_conv``, ``head.fc``, ``head_dist``); ``features_only``
  models use ``stages_S``.
* ``hybridvit``: timm's backbone names (no classifier) plus the dense-prediction output
  norms ``normS``.

MobileCLIP checkpoints (MCi image towers, https://github.com/apple/ml-mobileclip) hold the
official names under ``image_encoder.model.``; open_clip's hold timm names under
``visual.trunk.``. Both prefixes are stripped and every other key (text tower, logit scale) is
dropped.

timm's ``checkpoint_filter_fn`` documents official -> timm; the code here is our own and is
tested against it.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch

from ..layers.conv_bn import fuse_bn_state_dict
from .checkpoint import CheckpointMismatchError

__all__ = ['detect_fastvit_format', 'official_to_timm', 'timm_to_official',
           'is_reparameterized_state_dict', 'strip_clip_image_tower',
           'convert_fastvit_state_dict']

StateDict = Dict[str, torch.Tensor]

# official name component -> timm / hybridvit name component (path components only)
_OFFICIAL_TO_TIMM = {
    'rbr_conv': 'conv_kxk',
    'rbr_scale': 'conv_scale',
    'rbr_skip': 'identity',
    'lkb_origin': 'large_conv',
    'lkb_reparam': 'reparam_conv',
    'convffn': 'mlp',
    'conv_exp': 'final_conv',
}
_TIMM_TO_OFFICIAL = {v: k for k, v in _OFFICIAL_TO_TIMM.items() if k != 'lkb_reparam'}
_CLASSIFIER_PREFIXES = ('final_conv.', 'head.', 'head_dist.')
_UNFUSED_MARKERS = ('.conv_kxk.', '.conv_scale.', '.identity.', '.large_conv.',
                    '.pos_enc.', '.token_mixer.mixer.', '.token_mixer.norm.')


def detect_fastvit_format(state_dict: StateDict) -> str:
    """Return ``'official'``, ``'timm'`` or ``'hybridvit'`` from the key names.

    Raises:
        CheckpointMismatchError: when no FastViT layout is recognised.
    """
    keys = list(state_dict)
    if any(re.match(r'(network\.\d+|patch_embed\.\d)\.', k) for k in keys):
        return 'official'
    if any(re.match(r'(stem|stages)_\d+\.', k) for k in keys) or any(
            k.startswith(_CLASSIFIER_PREFIXES) for k in keys):
        return 'timm'
    if any(k.startswith('stem.') for k in keys) and any(k.startswith('stages.') for k in keys):
        return 'hybridvit'
    raise CheckpointMismatchError(
        'unrecognised FastViT checkpoint layout: expected official (patch_embed, network.N), '
        f'timm (stem, stages.N, head.fc) or hybridvit keys; first keys: {keys[:5]}')


def _rename_components(key: str, table: Dict[str, str]) -> str:
    return '.'.join(table.get(part, part) for part in key.split('.'))


def _official_network_layout(keys: List[str]) -> Dict[int, Tuple[int, str]]:
    """Map each official ``network`` index to (stage, role), role in blocks/downsample/pos_emb."""
    indices = sorted({int(m.group(1)) for k in keys for m in [re.match(r'network\.(\d+)\.', k)]
                      if m})
    down = {int(m.group(1)) for k in keys for m in [re.match(r'network\.(\d+)\.proj\.', k)] if m}
    layout, stage = {}, 0
    for idx in indices:
        if idx in down:
            stage += 1
            layout[idx] = (stage, 'downsample')
        elif any(re.match(rf'network\.{idx}\.(pe|reparam_conv)\.', k) for k in keys):
            layout[idx] = (stage, 'pos_emb')
        else:
            layout[idx] = (stage, 'blocks')
    return layout


def official_to_timm(state_dict: StateDict) -> 'OrderedDict[str, torch.Tensor]':
    """Rename an official apple/ml-fastvit state dict (unfused or fused) to timm's names.

    Dense-prediction norms ``normN`` (N = official network index of the tapped stage) are
    renamed to ``normS`` (S = stage index).
    """
    keys = list(state_dict)
    layout = _official_network_layout(keys)
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key
        match = re.match(r'network\.(\d+)\.(.*)$', key)
        if match:
            stage, role = layout[int(match.group(1))]
            rest = match.group(2)
            if role == 'pos_emb':
                rest = re.sub(r'^pe\.', 'pos_enc.', rest)
            new = f'stages.{stage}.{role}.{rest}'
        elif key.startswith('patch_embed.'):
            new = 'stem.' + key[len('patch_embed.'):]
        elif re.match(r'norm\d+\.', key):
            idx = int(re.match(r'norm(\d+)\.', key).group(1))
            stage = layout[idx][0] if idx in layout else idx
            new = re.sub(r'^norm\d+\.', f'norm{stage}.', key)
        elif key.startswith('dist_head.'):
            new = 'head_dist.' + key[len('dist_head.'):]
        elif key.startswith('head.'):
            new = 'head.fc.' + key[len('head.'):]
        new = _rename_components(new, _OFFICIAL_TO_TIMM)
        new = new.replace('.se.reduce.', '.se.fc1.').replace('.se.expand.', '.se.fc2.')
        new = re.sub(r'\.layer_scale(_\d)?$', r'.layer_scale\1.gamma', new)
        out[new] = value
    return out


def timm_to_official(state_dict: StateDict) -> 'OrderedDict[str, torch.Tensor]':
    """Inverse of :func:`official_to_timm`: timm / hybridvit names -> official names."""
    keys = list(state_dict)
    stage_ids = sorted({int(m.group(1)) for k in keys for m in [re.match(r'stages\.(\d+)\.', k)]
                        if m})
    index, nxt = {}, 0
    for s in stage_ids:
        for role in ('downsample', 'pos_emb', 'blocks'):
            if any(k.startswith(f'stages.{s}.{role}.') for k in keys):
                index[(s, role)] = nxt
                nxt += 1
    out = OrderedDict()
    for key, value in state_dict.items():
        new = key
        match = re.match(r'stages\.(\d+)\.(downsample|pos_emb|blocks)\.(.*)$', key)
        if match:
            s, role, rest = int(match.group(1)), match.group(2), match.group(3)
            if role == 'pos_emb':
                rest = re.sub(r'^pos_enc\.', 'pe.', rest)
            elif role == 'downsample':
                rest = re.sub(r'^proj\.0\.reparam_conv\.', 'proj.0.lkb_reparam.', rest)
            new = f'network.{index[(s, role)]}.{rest}'
        elif key.startswith('stem.'):
            new = 'patch_embed.' + key[len('stem.'):]
        elif re.match(r'norm\d+\.', key):
            s = int(re.match(r'norm(\d+)\.', key).group(1))
            new = re.sub(r'^norm\d+\.', f'norm{index.get((s, "blocks"), s)}.', key)
        elif key.startswith('head_dist.'):
            new = 'dist_head.' + key[len('head_dist.'):]
        elif key.startswith('head.fc.'):
            new = 'head.' + key[len('head.fc.'):]
        new = _rename_components(new, _TIMM_TO_OFFICIAL)
        new = new.replace('.se.fc1.', '.se.reduce.').replace('.se.fc2.', '.se.expand.')
        new = re.sub(r'\.layer_scale(_\d)?\.gamma$', r'.layer_scale\1', new)
        out[new] = value
    return out


def is_reparameterized_state_dict(state_dict: StateDict) -> Optional[bool]:
    """``True`` for a fused (deploy) FastViT state dict, ``False`` for an unfused one,
    ``None`` when it has no reparameterisable blocks at all (timm/hybridvit names)."""
    fused = any('.reparam_conv.' in k for k in state_dict)
    unfused = any(marker in '.' + k for k in state_dict for marker in _UNFUSED_MARKERS)
    if unfused:
        return False
    return True if fused else None


_CLIP_IMAGE_PREFIXES = ('image_encoder.model.', 'visual.trunk.')


def strip_clip_image_tower(state_dict: StateDict) -> Tuple[StateDict, List[str]]:
    """Keep the image tower of a MobileCLIP / open_clip checkpoint, prefix stripped.

    Returns ``(state_dict, dropped)``; a state dict without such a prefix is returned as is.
    """
    for prefix in _CLIP_IMAGE_PREFIXES:
        if any(k.startswith(prefix) for k in state_dict):
            kept = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                               if k.startswith(prefix))
            return kept, [k for k in state_dict if not k.startswith(prefix)]
    return state_dict, []


def convert_fastvit_state_dict(state_dict: StateDict, deploy: bool = False
                               ) -> Tuple['OrderedDict[str, torch.Tensor]', List[str]]:
    """Convert an official / timm / hybridvit FastViT state dict to hybridvit's names.

    Args:
        state_dict: flat tensor state dict (see :func:`read_state_dict`).
        deploy: the target model is built with ``deploy=True``. Fused checkpoints need
            it (their ConvFFN BN is folded into the conv here); unfused checkpoints for a
            deploy model pass through unchanged (the backbone fuses them after loading).

    Returns:
        (converted state dict, converted names of dropped classifier keys).

    Raises:
        CheckpointMismatchError: unknown layout, or a fused checkpoint with ``deploy=False``.
    """
    state_dict, clip_dropped = strip_clip_image_tower(state_dict)
    fmt = detect_fastvit_format(state_dict)
    sd = official_to_timm(state_dict) if fmt == 'official' else OrderedDict(state_dict)
    # timm features_only models flatten the top-level sequentials: stem_0., stages_1.
    sd = OrderedDict((re.sub(r'^(stem|stages)_(\d+)\.', r'\1.\2.', k), v) for k, v in sd.items())
    dropped = [k for k in sd if k.startswith(_CLASSIFIER_PREFIXES)]
    for k in dropped:
        del sd[k]
    dropped = clip_dropped + dropped
    fused = is_reparameterized_state_dict(sd)
    if fused and not deploy:
        raise CheckpointMismatchError(
            'this is a fused (reparameterised) FastViT checkpoint (reparam_conv keys, no '
            'conv_kxk / rbr_conv branches): build the backbone with deploy=True to load it, '
            'or use the unfused checkpoint for training / fine-tuning')
    if fused and deploy:
        # the official / timm ConvFFN keeps its BN at inference; ours folds it
        sd = fuse_bn_state_dict(sd, only=r'\.mlp\.conv\.$')
    return sd, dropped
