"""Task-agnostic forward passes used to compare a fused model with the original one and to
export it: backbone(+neck) features for detectors, logits for segmentors, the tensor outputs of
hand-mesh estimators."""
from typing import List

import torch

__all__ = ['comparable_outputs', 'max_relative_error']


def _flatten(out) -> List[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out) for t in _flatten(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    return []


@torch.no_grad()
def comparable_outputs(model, inputs: torch.Tensor, task: str) -> List[torch.Tensor]:
    """Deterministic tensors that a fused model must reproduce.

    Args:
        inputs: a normalised batch ``(N, 3, H, W)`` (the data preprocessor's output).
        task: ``'seg'``, ``'det'`` or ``'hand'`` (see :func:`hybridvit.apis.task_of`).
    """
    if task == 'seg':
        return _flatten(model._forward(inputs))  # decode-head logits
    if task == 'det':
        feats = model.extract_feat(inputs)
        rpn = model.rpn_head(feats) if hasattr(model, 'rpn_head') else ()
        return _flatten(feats) + _flatten(rpn)
    return _flatten(model(inputs, mode='tensor'))  # hand mesh: the head's raw outputs


def max_relative_error(ref: List[torch.Tensor], new: List[torch.Tensor]) -> float:
    """max |a - b| / max |a| over all tensors (0 when identical)."""
    if len(ref) != len(new):
        raise ValueError(f'different number of outputs: {len(ref)} vs {len(new)}')
    worst = 0.0
    for a, b in zip(ref, new):
        if a.shape != b.shape:
            raise ValueError(f'output shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}')
        worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
    return worst
