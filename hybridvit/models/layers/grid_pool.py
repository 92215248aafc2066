"""Adaptive average pooling to a fixed grid that exports to ONNX for any input size.

``torch.nn.functional.adaptive_avg_pool2d`` only exports when the output size divides the
input size (a 224-px FastViT crop gives a 7x7 last stage: not divisible by 4). Here the same
pooling windows (PyTorch's: ``floor(i * H / p)`` to ``ceil((i + 1) * H / p)``) become two small
averaging matrices built from the traced input size, so ``P_h @ x @ P_w^T`` is one pair of
MatMuls in the exported graph and equals ``adaptive_avg_pool2d`` in eager mode.
"""
import torch


def _window_matrix(size: torch.Tensor, cells: int, like: torch.Tensor) -> torch.Tensor:
    """(cells, size) matrix whose row i averages input positions [floor(i*size/cells),
    ceil((i+1)*size/cells))."""
    idx = torch.arange(cells, device=like.device)
    start = torch.div(idx * size, cells, rounding_mode='floor')
    end = -torch.div(-(idx + 1) * size, cells, rounding_mode='floor')  # ceil division
    pos = torch.arange(size, device=like.device)
    inside = (pos[None] >= start[:, None]) & (pos[None] < end[:, None])  # (cells, size)
    weights = inside.to(like.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


def grid_avg_pool2d(x: torch.Tensor, cells: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, cells, cells), identical to ``adaptive_avg_pool2d(x, cells)``."""
    if cells < 1:
        raise ValueError(f'cells must be >= 1, got {cells}')
    rows = _window_matrix(x.shape[2], cells, x)  # (cells, H)
    cols = _window_matrix(x.shape[3], cells, x)  # (cells, W)
    return torch.matmul(torch.matmul(rows, x), cols.t())  # (B, C, cells, W) -> (B, C, cells, cells)
