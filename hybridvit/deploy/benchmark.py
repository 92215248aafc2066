"""Latency / throughput / memory / FLOP measurement for fused and unfused models (CPU).

Used by ``tools/analysis/benchmark.py``. Method, so that numbers are comparable:

* threads: ``torch.set_num_threads(threads)`` for eager PyTorch, ``intra_op_num_threads=threads``
  (one inter-op thread, sequential execution, all graph optimisations) for ONNX Runtime;
* latency: eager modes are called ALTERNATELY (after ``warmup`` calls of each: one call each
  per repetition, order rotated every repetition), so that machine drift (thermal, other
  jobs) hits all modes equally; the median of the repetitions is reported. An ONNX Runtime
  session's worker threads keep spinning for a while after ``run()`` returns and take the
  cores from whatever runs next (measured here, FastViT-T8 at 256x256, 2 threads: timm's
  fused eager model 51.8 ms right after an ORT call, 23.2 ms after an eager call; snippet in
  ``docs/benchmarks.md``), so each
  ORT mode is timed as consecutive calls of its session (as deployed), and the blocks (eager,
  each ORT session) take turns over a few rounds, each block starting after a 0.1 s pause with
  untimed calls: a timed call never follows a call of another block
  (:func:`latency_schedule`);
* every eager mode runs through :func:`torch_callable` (``torch.inference_mode``, eval mode,
  the process's ``torch.set_num_threads``), ORT modes through :func:`ort_callable` with the
  same thread count;
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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ['count_flops', 'sgemm_gflops', 'interleaved_latency', 'latency_schedule',
           'torch_callable', 'ort_callable', 'median_ms', 'peak_rss_increase_mb', 'read_vm_kb',
           'reset_peak_rss', 'EAGER', 'ORT']

EAGER = 'torch'  # engine names of the modes (a spec's ``engine``)
ORT = 'ort'


# ----------------------------------------------------------------------------- FLOPs
def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(fn: Callable, *args) -> int:
    """FLOPs of one call ``fn(*args)`` (e.g. ``count_flops(module, x)``; MACs = FLOPs / 2),
    without autograd."""
    from torch.utils.flop_counter import FlopCounterMode
    custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
    counter = FlopCounterMode(display=False, custom_mapping=custom)
    with counter, torch.no_grad():
        fn(*args)
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


def _blocks(names: Sequence[str], engines: Dict[str, str]) -> List[List[str]]:
    """Eager modes share torch's thread pool and alternate in one block; every other mode (an
    ONNX Runtime session with its own spinning pool) is a block of its own."""
    blocks: Dict[object, List[str]] = {}
    for name in names:
        engine = engines.get(name, EAGER)
        blocks.setdefault(engine if engine == EAGER else (engine, name), []).append(name)
    return list(blocks.values())


def latency_schedule(names: Sequence[str], runs: int, warmup: int = 2,
                     engines: Optional[Dict[str, str]] = None,
                     rounds: int = 5) -> List[Tuple[Optional[str], bool]]:
    """The call sequence of :func:`interleaved_latency`: ``[(mode, timed), ...]``, where
    ``(None, False)`` marks a pause (block switch).

    Eager modes alternate within their block (one call each per repetition, order rotated by
    one per repetition); each ONNX Runtime mode forms a block of consecutive calls (one session
    running repeatedly, as deployed). With several blocks the repetitions are split into
    ``rounds`` rounds that visit every block in turn, so drift still hits all modes; every
    block switch is a pause followed by untimed calls (``warmup`` per mode in the first round,
    at least one later), so a timed call never directly follows a call of another block.

    Args:
        names: the modes.
        runs: timed calls per mode.
        warmup: untimed calls per mode before its first timed call.
        engines: ``{mode: engine}`` (:data:`EAGER` or :data:`ORT`; default all eager).
        rounds: number of passes over the blocks (capped at ``runs``; 1 with one block).
    """
    if runs < 1:
        raise ValueError(f'runs must be >= 1, got {runs}')
    blocks = _blocks(names, engines or {})
    rounds = 1 if len(blocks) == 1 else max(1, min(rounds, runs))
    sequence = []
    done = [0] * len(blocks)  # repetitions of each block so far (the rotation continues)
    for r in range(rounds):
        reps = runs // rounds + (r < runs % rounds)
        for i, block in enumerate(blocks):
            settle = warmup if r == 0 else 1
            if sequence:
                sequence.append((None, False))
                settle = max(settle, 1)
            sequence += [(name, False) for name in block for _ in range(settle)]
            for rep in range(done[i], done[i] + reps):
                shift = rep % len(block)
                sequence += [(name, True) for name in block[shift:] + block[:shift]]
            done[i] += reps
    return sequence


def interleaved_latency(calls: Dict[str, Callable[[torch.Tensor], object]], x: torch.Tensor,
                        runs: int, warmup: int = 2,
                        inputs: Optional[Dict[str, torch.Tensor]] = None,
                        engines: Optional[Dict[str, str]] = None,
                        pause: float = 0.1) -> Dict[str, List[float]]:
    """Seconds per call of every callable, in the order of :func:`latency_schedule`.

    Args:
        calls: ``{mode: callable(x)}``.
        x: the input (``inputs`` may give a different one per mode).
        runs: timed calls per mode.
        warmup: untimed calls per mode first.
        engines: ``{mode: engine}`` (default: all eager; see :func:`latency_schedule`).
        pause: seconds of idle time at each block switch (spinning thread pools go to sleep).

    Returns:
        ``{mode: [seconds of each timed call]}``.
    """
    inputs = {n: (inputs or {}).get(n, x) for n in calls}
    times = {n: [] for n in calls}
    for name, timed in latency_schedule(list(calls), runs, warmup, engines):
        if name is None:
            time.sleep(pause)
            continue
        start = time.perf_counter()
        calls[name](inputs[name])
        if timed:
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
