"""Batched rigid Procrustes alignment in torch, for rotation-tolerant hand mesh losses.

A single image leaves the global orientation of a hand partly ambiguous (the back and the palm
side of a hand can look alike; a depth flip projects to the same silhouette). An L1 loss in the
camera frame then pulls the regressed mesh towards the average of the plausible orientations,
i.e. a flattened, blurred hand. FreiHAND's metrics forgive any rotation (they align each
prediction with a similarity Procrustes fit first, see
:mod:`hybridvit.evaluation.functional.hand_mesh`), so a loss measured after the same kind of
alignment trains the shape the metric judges. The rotation is estimated without gradient (an SVD
of a 3x3 matrix per sample) so the loss is as well-conditioned as a plain L1 loss, even while
the prediction is still near zero; scale is not aligned, so the regressed size stays metric.
"""
import torch


@torch.no_grad()
def procrustes_rotation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Orthogonal matrices ``R`` minimising ``||source_c @ R - target_c||_F`` per sample.

    Same solution as ``scipy.linalg.orthogonal_procrustes`` (used by the official FreiHAND
    evaluation), so reflections are allowed, as in the metric.

    Args:
        source (torch.Tensor): (B, P, 3) points.
        target (torch.Tensor): (B, P, 3) corresponding points.

    Returns:
        torch.Tensor: (B, 3, 3) matrices, applied as ``points @ R``.
    """
    if source.shape != target.shape or source.dim() != 3:
        raise ValueError(f'source and target must both be (B, P, 3), got '
                         f'{tuple(source.shape)} and {tuple(target.shape)}')
    src = (source - source.mean(1, keepdim=True)).double()
    tgt = (target - target.mean(1, keepdim=True)).double()
    cov = src.transpose(1, 2) @ tgt  # (B, 3, 3)
    u, _, vh = torch.linalg.svd(cov)
    return (u @ vh).to(source.dtype)


def rigid_align(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Rotate and translate ``source`` (B, P, 3) onto ``target``; the rotation is detached.

    Gradients flow into ``source`` through the (fixed) rotation and its centring, so a loss on
    the result trains shape, not orientation.
    """
    rot = procrustes_rotation(source.detach(), target.detach())  # (B, 3, 3)
    centred = source - source.mean(1, keepdim=True)  # (B, P, 3)
    return centred @ rot + target.mean(1, keepdim=True)
