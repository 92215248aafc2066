"""Latency / throughput / memory / FLOP measurement for fused and unfused models (CPU).

Used by ``tools/analysis/benchmark.py``. Method, so that numbers are comparable:

* threads: ``torch.set_num_threads(threads)`` for eager PyTorch, ``intra_op_num_threads=threads``
  (one inter-op thread, sequential execution, all graph optimisations) for ONNX Runtime;
* latency: after ``warmup`` calls of every mode, the modes are called ALTERNATELY, one call each
  per repetition with the order rotated every repetition, so that machine drift (thermal,
  other jobs) hits all modes equally; the median of the repetitions is reported;
* peak memory: each (mode, resolution) runs in a fresh ``spawn`` child process; after the
  model / session is built and the input allocated, the kernel's RSS high-water mark is reset
  (``/proc/self/clear_refs`` = 5) and ``VmHWM - VmRSS`` after two inference calls is the peak
  RSS increase (activations, workspace, allocator / ORT arena growth, plus the same one-time
  lazy initialisation of thread pools and kernel caches for every resolution);
* FLOPs: :class:`torch.utils.flop_counter.FlopCounterMode` on the eager model (convolutions,
  matmuls, and ``F.scaled_dot_product_attention`` on CPU, which the stock counter misses);
  MACs = FLOPs / 2.
"""
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

__all__ = ['count_flops', 'sgemm_gflops', 'interleaved_latency', 'torch_callable',
           'ort_callable', 'peak_rss_increase_mb', 'read_vm_kb', 'reset_peak_rss']


# ----------------------------------------------------------------------------- FLOPs
def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``module`` on ``x`` (MACs = FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter, torch.no_grad():
        module(x)
    return int(counter.get_total_flops())


def sgemm_gflops(threads: int, n: int = 2048, runs: int = 5) -> float:
    """This machine's fp32 GEMM rate with ``threads`` threads: best of ``runs`` n x n x n
    ``torch.mm`` (2 n^3 FLOPs each), in GFLOP/s."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)  # warm-up
        best = float('inf')
        for _ in range(runs):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return 2 * n ** 3 / best / 1e9


# ----------------------------------------------------------------------------- callables
def torch_callable(module: torch.nn.Module) -> Callable[[torch.Tensor], object]:
    """``x -> module(x)`` in inference mode."""
    module.eval()

    def run(x):
        with torch.inference_mode():
            return module(x)

    return run


def ort_callable(model_path: str, threads: int) -> Callable[[torch.Tensor], object]:
    """``x -> session.run(x)`` for an ONNX file (the numpy view of ``x`` costs no copy)."""
    from .onnx_export import ort_session
    sess = ort_session(model_path, threads)
    name = sess.get_inputs()[0].name

    def run(x):
        return sess.run(None, {name: x.numpy()})

    return run


def interleaved_latency(calls: Dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor,
                        runs: int, warmup: int = 2,
                        inputs: Optional[Dict[str, torch.Tensor]] = None
                        ) -> Dict[str, List[float]]:
    """Seconds per call of every callable, measured alternately.

    Args:
        calls: ``{mode: callable(x)}``.
        x: the input (``inputs`` may give a different one per mode).
        runs: repetitions (each calls every mode once, order rotated per repetition).
        warmup: untimed calls per mode first.

    Returns:
        ``{mode: [seconds of each repetition]}``.
    """
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs}')
    names = list(calls)
    inputs = {n: (inputs or {}).get(n, x) for n in names}
    for name in names:
        for _ in range(warmup):
            calls[name](inputs[name])
    times = {n: [] for n in names}
    for rep in range(runs):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            calls[name](inputs[name])
            times[name].append(time.perf_counter() - start)
    return times


def median_ms(seconds: Sequence[float]) -> float:
    return 1e3 * statistics.median(seconds)


# ----------------------------------------------------------------------------- memory
def read_vm_kb(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` ... of this process from ``/proc/self/status``, in kB."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(f'{field} not in /proc/self/status')


def reset_peak_rss() -> bool:
    """Reset the RSS high-water mark (``VmHWM``) to the current RSS; False if not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _memory_child(builder: str, spec: dict, resolutions: Sequence[int], threads: int,
                  batch: int, queue) -> None:
    try:
        import importlib
        torch.set_num_threads(threads)
        module_name, fn_name = builder.rsplit(':', 1)
        build = getattr(importlib.import_module(module_name), fn_name)
        result = {}
        for res in resolutions:
            call = build(spec, res, threads)  # a callable x -> outputs
            x = torch.randn(batch, 3, res, res)
            if not reset_peak_rss():
                queue.put(('error', 'cannot reset VmHWM (/proc/self/clear_refs)'))
                return
            base = read_vm_kb('VmRSS')
            for _ in range(2):
                call(x)
            result[res] = (read_vm_kb('VmHWM') - base) / 1024.0
            del call
        queue.put(('ok', result))
    except Exception as err:  # noqa: BLE001 - reported to the parent
        queue.put(('error', f'{type(err).__name__}: {err}'))


def _one_child(builder: str, spec: dict, res: int, threads: int, batch: int,
               timeout: float) -> float:
    import multiprocessing as mp
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    env_threads = os.environ.get('OMP_NUM_THREADS')
    os.environ['OMP_NUM_THREADS'] = str(threads)
    try:
        proc = ctx.Process(target=_memory_child,
                           args=(builder, spec, [res], threads, batch, queue))
        proc.start()
    finally:
        if env_threads is None:
            os.environ.pop('OMP_NUM_THREADS')
        else:
            os.environ['OMP_NUM_THREADS'] = env_threads
    try:
        status, payload = queue.get(timeout=timeout)
    except Exception as err:  # queue.Empty, or the child died
        proc.kill()
        raise RuntimeError(f'memory child gave no result ({type(err).__name__})') from err
    finally:
        proc.join(timeout=60)
    if status != 'ok':
        raise RuntimeError(f'memory measurement failed: {payload}')
    return payload[res]


def peak_rss_increase_mb(builder: str, spec: dict, resolutions: Sequence[int], threads: int,
                         batch: int = 1, timeout: float = 1800.0) -> Dict[int, float]:
    """Peak RSS increase (MB) of the first inference calls, one fresh spawned process per
    resolution (so every number includes the same one-time lazy initialisation: thread pool,
    kernel caches, ORT arena).

    Args:
        builder: ``'package.module:function'``; ``function(spec, resolution, threads)`` must
            return a callable ``x -> outputs`` (it is imported in the child).
        spec: picklable description of the mode, passed to ``builder``.
        resolutions: square input sizes.
        threads: thread count in the child.
        batch: batch size.

    Returns:
        ``{resolution: MB}``; raises ``RuntimeError`` with the child's error otherwise.
    """
    return {res: _one_child(builder, spec, res, threads, batch, timeout)
            for res in resolutions}


def as_numpy_outputs(out) -> List[np.ndarray]:
    """Outputs of a torch or ORT callable as numpy arrays (for checks)."""
    if isinstance(out, (list, tuple)):
        return [o.detach().numpy() if isinstance(o, torch.Tensor) else np.asarray(o)
                for o in out]
    return [out.detach().numpy()]
