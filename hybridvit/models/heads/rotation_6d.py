"""Continuous 6D rotation representation (Zhou et al., "On the Continuity of Rotation
Representations in Neural Networks", CVPR 2019, https://arxiv.org/abs/1812.07035).

Two 3-vectors are Gram-Schmidt orthonormalised into the first two columns of a rotation matrix;
the third is their cross product. Unlike Euler angles or axis-angle, the map is continuous, which
makes it easy to regress.
"""
import torch
import torch.nn.functional as F

#: 6D code of the identity rotation (first two columns of I, concatenated).
IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def rotation_6d_to_matrix(code: torch.Tensor) -> torch.Tensor:
    """(B, 6) -> (B, 3, 3) proper rotation matrices (columns b1, b2, b3)."""
    if code.shape[-1] != 6:
        raise ValueError(f'6D rotation codes must have 6 values, got shape {tuple(code.shape)}')
    a1, a2 = code[..., :3], code[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)
