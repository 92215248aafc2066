"""Model outputs as flat tensor lists, and the one relative-error comparison.

Used wherever two computations must agree: a fused model vs the original (``reparameterize``),
ONNX Runtime vs PyTorch (``hybridvit.deploy.check_onnx``), a task's comparable outputs
(``hybridvit.apis.tasks``). One flattening order everywhere: dict entries in sorted key order,
sequences in order, non-tensor leaves (``None``, metadata) skipped.
"""
from typing import Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

__all__ = ['flatten_outputs', 'flatten_tensors', 'compare_outputs', 'max_relative_error',
           'OutputsAsTuple']

Array = Union[torch.Tensor, np.ndarray]


def flatten_outputs(out) -> List[Tuple[str, torch.Tensor]]:
    """Flatten a tensor / tuple / list / dict output into ``(name, tensor)`` pairs.

    Names join the keys / indices with ``'.'`` (``''`` for a bare tensor), e.g. a dict
    ``{'b': (t0, t1), 'a': t2}`` gives ``[('a', t2), ('b.0', t0), ('b.1', t1)]``.
    """
    if isinstance(out, torch.Tensor):
        return [('', out)]
    if isinstance(out, dict):
        items = [(str(key), out[key]) for key in sorted(out)]
    elif isinstance(out, (list, tuple)):
        items = [(str(i), item) for i, item in enumerate(out)]
    else:
        return []
    return [(f'{key}.{name}' if name else key, t)
            for key, item in items for name, t in flatten_outputs(item)]


def flatten_tensors(out) -> List[torch.Tensor]:
    """The tensors of :func:`flatten_outputs`, without names."""
    return [t for _, t in flatten_outputs(out)]


def _as_numpy(t: Array) -> np.ndarray:
    return t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def compare_outputs(ref: Sequence[Array], new: Sequence[Array]) -> Dict[str, float]:
    """Worst absolute and relative difference of ``new`` against ``ref``, tensor by tensor.

    The relative error of one tensor is ``max |ref - new| / max |ref|`` (``max |ref|`` clamped
    at 1e-12); the worst tensor is reported. Empty tensors count as equal.

    Args:
        ref: reference tensors / arrays.
        new: tensors / arrays to check, in the same order and shapes.

    Returns:
        ``dict(max_abs=..., max_rel=...)`` (both 0.0 when identical).

    Raises:
        ValueError: different numbers of outputs or different shapes.
    """
    if len(ref) != len(new):
        raise ValueError(f'different number of outputs: {len(ref)} vs {len(new)}')
    max_abs = max_rel = 0.0
    for i, (a, b) in enumerate(zip(ref, new)):
        a, b = _as_numpy(a).astype(np.float64), _as_numpy(b).astype(np.float64)
        if a.shape != b.shape:
            raise ValueError(f'output {i}: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}')
        if not a.size:
            continue
        diff = float(np.abs(a - b).max())
        max_abs = max(max_abs, diff)
        max_rel = max(max_rel, diff / max(float(np.abs(a).max()), 1e-12))
    return dict(max_abs=max_abs, max_rel=max_rel)


def max_relative_error(ref: Sequence[Array], new: Sequence[Array]) -> float:
    """``max |a - b| / max |a|`` over all tensors (0 when identical); see
    :func:`compare_outputs`."""
    return compare_outputs(ref, new)['max_rel']


class OutputsAsTuple(nn.Module):
    """Wrap ``fn(module, x)`` so that a traced / exported graph returns a flat tuple of tensors.

    Args:
        module: the module whose parameters the graph uses.
        fn: ``fn(module, inputs)`` -> tensor / tuple / dict of tensors (a module-level function,
            so that the wrapper pickles).
    """

    def __init__(self, module: nn.Module, fn: Callable[[nn.Module, torch.Tensor], object]):
        super().__init__()
        self.module = module
        self.fn = fn

    def named_outputs(self, x: torch.Tensor) -> List[Tuple[str, torch.Tensor]]:
        """``(name, tensor)`` pairs of one call (see :func:`flatten_outputs`)."""
        return flatten_outputs(self.fn(self.module, x))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(t for _, t in self.named_outputs(x))
