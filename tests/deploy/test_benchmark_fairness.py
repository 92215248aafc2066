"""The benchmark treats both sides of every comparison alike (structure, not timing):

* the call order: eager modes alternate; an ONNX Runtime session (whose worker threads keep
  spinning after ``run()``) is never directly followed by a timed call of another mode;
* the same grad mode, eval mode and thread count for our model and timm's;
* every comparison names modes of its own group (labels made once).
"""
import pytest
import torch

from hybridvit.deploy import bench_suite
from hybridvit.deploy.benchmark import EAGER, ORT, interleaved_latency, latency_schedule

ENGINES = {'ours': EAGER, 'timm': EAGER, 'unfused': EAGER, 'ours-ort': ORT, 'timm-ort': ORT}


def _block(name):
    return 'eager' if ENGINES[name] == EAGER else name


@pytest.mark.parametrize('runs, warmup', [(1, 0), (7, 2), (10, 3)])
def test_timed_calls_never_follow_another_block(runs, warmup):
    seq = latency_schedule(list(ENGINES), runs, warmup, ENGINES)
    timed = [name for name, t in seq if t]
    assert {n: timed.count(n) for n in ENGINES} == {n: runs for n in ENGINES}
    for (prev, _), (name, is_timed) in zip(seq, seq[1:]):
        if is_timed:  # the call right before a timed call is of the same block, never a pause
            assert prev is not None and _block(prev) == _block(name), (prev, name)
        if prev is None:  # after a pause (block switch) comes an untimed call
            assert not is_timed
    # drift: every block is visited in several rounds, not once at the start
    blocks = [_block(n) for n, t in seq if t]
    switches = sum(a != b for a, b in zip(blocks, blocks[1:]))
    rounds = min(runs, 5)  # 3 blocks per round: eager -> ours-ort -> timm-ort -> eager ...
    assert switches == 3 * rounds - 1


def test_eager_modes_alternate_with_rotation():
    seq = latency_schedule(['a', 'b', 'c'], 6, 1, {})
    assert seq[:3] == [('a', False), ('b', False), ('c', False)]
    order = [n for n, t in seq if t]
    reps = [order[i:i + 3] for i in range(0, 18, 3)]
    assert reps == [list('abc'), list('bca'), list('cab')] * 2
    # each mode is first, second and third equally often
    for pos in range(3):
        assert sorted(r[pos] for r in reps) == sorted('aabbcc')


def test_interleaved_latency_follows_the_schedule():
    calls, log = {}, []
    for name in ENGINES:
        calls[name] = (lambda x, name=name: log.append(name))
    times = interleaved_latency(calls, torch.zeros(1), 4, 1, engines=ENGINES, pause=0.0)
    assert log == [n for n, _ in latency_schedule(list(ENGINES), 4, 1, ENGINES) if n]
    assert {k: len(v) for k, v in times.items()} == {n: 4 for n in ENGINES}


def test_ours_and_timm_run_under_the_same_grad_mode_threads_and_eval(tmp_path):
    runner = bench_suite.BenchmarkRunner(str(tmp_path), threads=1, sgemm_size=64)
    group = bench_suite.backbone_group('fastvit-t8', [64], onnx=False)
    seen = {}
    previous = torch.get_num_threads()
    try:
        for key, spec in group.modes.items():
            module = runner.module(spec)
            module.register_forward_pre_hook(lambda m, args, key=key: seen.__setitem__(key, (
                torch.is_inference_mode_enabled(), torch.is_grad_enabled(),
                torch.get_num_threads(), m.training)))
            runner.callable(key, spec, 64)(torch.randn(1, 3, 64, 64))
    finally:
        torch.set_num_threads(previous)
    assert set(seen) == {('fastvit-t8', 'unfused'), ('fastvit-t8', 'fused'),
                         ('timm fastvit_t8', 'fused')}
    assert set(seen.values()) == {(True, False, 1, False)}


def test_runner_times_each_engine_as_its_own_block(tmp_path, monkeypatch):
    runner = bench_suite.BenchmarkRunner(str(tmp_path), threads=1, runs=2, warmup=0, batch=0,
                                         memory=False, sgemm_size=64)
    group = bench_suite.backbone_group('fastvit-t8', [64])
    recorded = []

    def fake_latency(calls, x, runs, warmup, inputs=None, engines=None, pause=0.1):
        recorded.append(dict(engines))
        return {k: [0.01] * runs for k in calls}

    monkeypatch.setattr(bench_suite, 'interleaved_latency', fake_latency)
    monkeypatch.setattr(runner, 'callable', lambda key, spec, res: (lambda x: None))
    runner.run(group)
    assert recorded == [{('fastvit-t8', 'unfused'): EAGER, ('fastvit-t8', 'fused'): EAGER,
                         ('fastvit-t8', 'fused-ort'): ORT,
                         ('timm fastvit_t8', 'fused'): EAGER,
                         ('timm fastvit_t8', 'fused-ort'): ORT}]
    lines = bench_suite.comparison_lines(runner.rows, runner.comparisons)
    assert lines == ['- fastvit-t8 fused / timm fused at 64: 1.000x (ok)',
                     '- fastvit-t8 fused-ort / timm fused-ort at 64: 1.000x (ok)']


@pytest.mark.parametrize('make', [
    lambda: bench_suite.backbone_group('mobilevit-xs', [256]),
    lambda: bench_suite.mixer_ablation_group([384, 1024]),
    lambda: bench_suite.seg_r50_group('r50.py'),
    lambda: bench_suite.det_r50_group('r50.py'),
])
def test_comparisons_name_modes_of_their_group(make):
    group = make()
    assert group.comparisons
    for comparison in group.comparisons:
        assert comparison.ours in group.modes and comparison.reference in group.modes
        # both sides of a comparison run on the same engine
        assert (group.modes[comparison.ours].get('engine', EAGER)
                == group.modes[comparison.reference].get('engine', EAGER))
