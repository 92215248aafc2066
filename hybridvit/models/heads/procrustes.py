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


def _quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(B, 4) unit quaternions (w, x, y, z) -> (B, 3, 3) rotation matrices (column vectors)."""
    w, x, y, z = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).view(*q.shape[:-1], 3, 3)


@torch.no_grad()
def similarity_fit(source: torch.Tensor, target: torch.Tensor, num_squarings: int = 16):
    """Proper rotation ``R``, scale ``s`` and translation ``t`` minimising
    ``sum_i |s R a_i + t - b_i|^2`` (Umeyama's least-squares similarity, no reflection).

    The rotation comes from Horn's closed form (Horn, "Closed-form solution of absolute
    orientation using unit quaternions", JOSA A 1987): the unit quaternion is the eigenvector of
    the largest eigenvalue of a symmetric 4x4 matrix ``N`` built from the cross-covariance. The
    eigenvector is found by repeated squaring of ``N`` shifted to be positive semi-definite
    (power iteration with power ``2 ** num_squarings``), which needs only matrix products, so
    the fit exports to ONNX with standard operators (an SVD does not). When the two largest
    eigenvalues tie (a truly ambiguous fit) any rotation of that eigenspace is returned.

    Args:
        source (torch.Tensor): (B, P, 3) points ``a``.
        target (torch.Tensor): (B, P, 3) corresponding points ``b``.
        num_squarings (int): squarings of the shifted ``N``. Defaults to 16.

    Returns:
        tuple: ``R`` (B, 3, 3) applied as ``R @ a`` (det +1), ``s`` (B,), ``t`` (B, 3).
    """
    if source.shape != target.shape or source.dim() != 3 or source.shape[-1] != 3:
        raise ValueError(f'source and target must both be (B, P, 3), got '
                         f'{tuple(source.shape)} and {tuple(target.shape)}')
    mean_a, mean_b = source.mean(1, keepdim=True), target.mean(1, keepdim=True)  # (B, 1, 3)
    a, b = source - mean_a, target - mean_b
    cov = a.transpose(1, 2) @ b  # (B, 3, 3): cov[i, j] = sum a_i b_j
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = [cov[:, i].unbind(-1) for i in range(3)]
    n = torch.stack([
        sxx + syy + szz, syz - szy, szx - sxz, sxy - syx,
        syz - szy, sxx - syy - szz, sxy + syx, szx + sxz,
        szx - sxz, sxy + syx, syy - sxx - szz, syz + szy,
        sxy - syx, szx + sxz, syz + szy, szz - sxx - syy], dim=-1).view(-1, 4, 4)
    # eigenvalues of N lie in [-sqrt(3) |cov|_F, sqrt(3) |cov|_F]: shift them to be >= 0 so
    # the largest one also has the largest magnitude; the tiny identity keeps N = 0 finite
    eye = torch.eye(4, dtype=n.dtype, device=n.device)
    frob = cov.flatten(1).norm(dim=1)[:, None, None]  # (B, 1, 1)
    power = n + eye * (1.7321 * frob + 1e-12)
    for _ in range(num_squarings):
        power = power / power.flatten(1).norm(dim=1)[:, None, None]  # unit norm: no overflow
        power = power @ power
    # power ~ v v^T: its column at the largest diagonal entry is the best-conditioned copy of v
    col = power.diagonal(dim1=1, dim2=2).argmax(dim=1)  # (B,)
    quat = torch.gather(power, 2, col[:, None, None].expand(-1, 4, 1)).squeeze(2)  # (B, 4)
    rot = _quaternion_to_matrix(quat / quat.norm(dim=1, keepdim=True))
    rotated = a @ rot.transpose(1, 2)  # (B, P, 3)
    scale = (rotated * b).sum((1, 2)) / a.pow(2).sum((1, 2)).clamp(min=1e-12)  # (B,)
    trans = mean_b[:, 0] - scale[:, None] * (rot @ mean_a[:, 0, :, None])[..., 0]  # (B, 3)
    return rot, scale, trans
