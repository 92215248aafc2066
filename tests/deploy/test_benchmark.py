"""Benchmark tool and its measurement helpers (tiny sizes: behaviour, not performance)."""
import csv
import importlib.util
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from hybridvit.deploy.benchmark import (count_flops, interleaved_latency,
                                        peak_rss_increase_mb, sgemm_gflops)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COLUMNS = ['group', 'model', 'mode', 'resolution', 'latency_ms', 'latency_ms_min', 'runs',
           'throughput_img_s', 'throughput_batch', 'peak_rss_mb', 'params_m', 'gmacs',
           'gmacs_256', 'gflops_per_s', 'pct_sgemm_peak', 'threads']


def _tool():
    spec = importlib.util.spec_from_file_location(
        'benchmark_tool', osp.join(ROOT, 'tools/analysis/benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_count_flops_conv_and_cpu_attention():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
    assert count_flops(conv, torch.randn(1, 4, 5, 5)) == 2 * 8 * 4 * 9 * 25

    class Attn(torch.nn.Module):
        def forward(self, x):  # (B, heads, N, d)
            return F.scaled_dot_product_attention(x, x, x)

    b, h, n, d = 1, 2, 16, 8
    # QK^T and AV: 2 * (2 * N * N * d) per head (the stock counter misses the CPU kernel)
    assert count_flops(Attn(), torch.randn(b, h, n, d)) == 4 * b * h * n * n * d


def test_interleaved_latency_rotates_and_counts():
    order = []
    calls = {name: (lambda x, name=name: order.append(name)) for name in 'abc'}
    times = interleaved_latency(calls, torch.zeros(1), runs=3, warmup=1)
    assert {k: len(v) for k, v in times.items()} == {'a': 3, 'b': 3, 'c': 3}
    assert order[3:] == list('abc') + list('bca') + list('cab')  # after 1 warm-up each


def test_sgemm_rate_is_2n3_over_the_best_run(monkeypatch):
    """A fake clock gives runs of 0.5 s, 0.25 s and 0.4 s: the rate is 2 n^3 / 0.25 s."""
    from hybridvit.deploy import benchmark
    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.4])
    monkeypatch.setattr(benchmark, 'time', SimpleNamespace(perf_counter=lambda: next(ticks)))
    before = torch.get_num_threads()
    assert sgemm_gflops(1, n=64, runs=3) == pytest.approx(2 * 64 ** 3 / 0.25 / 1e9)
    assert torch.get_num_threads() == before  # the thread setting is restored
    with pytest.raises(StopIteration):  # exactly 2 clock reads per run, no more
        next(ticks)


def test_peak_rss_increase_measures_a_known_allocation():
    """A child that allocates 16 / 64 MB (resolution 64 / 256 x 0.25 MB) reports them."""
    mem = peak_rss_increase_mb('_memory_builders:allocating_callable', dict(mb_per_px=0.25),
                               [64, 256], threads=1)
    assert set(mem) == {64, 256}
    assert mem[64] == pytest.approx(16, abs=4) and mem[256] == pytest.approx(64, abs=4)


def test_peak_rss_increase_of_a_real_model_covers_its_stem_output():
    """FastViT-T8 at 256x256: the stem alone writes a 48 x 128 x 128 fp32 map (3 MB)."""
    spec = dict(source='backbone', name='fastvit-t8', fused=True)
    mem = peak_rss_increase_mb('hybridvit.deploy.bench_models:build_callable', spec, [256],
                               threads=1)
    assert mem[256] >= 48 * 128 * 128 * 4 / 2 ** 20


def test_benchmark_tool_tiny_run_writes_csv_png(tmp_path, capsys):
    tool = _tool()
    tool.main(['--backbone', 'fastvit-t8', '--resolutions', '64', '--runs', '1', '--warmup',
               '0', '--threads', '1', '--batch', '2', '--no-memory', '--sgemm-size', '256',
               '--out-dir', str(tmp_path)])
    with open(tmp_path / 'benchmark.csv') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    modes = [(r['model'], r['mode']) for r in rows]
    assert modes == [('fastvit-t8', 'unfused'), ('fastvit-t8', 'fused'),
                     ('fastvit-t8', 'fused-ort'), ('timm fastvit_t8', 'fused'),
                     ('timm fastvit_t8', 'fused-ort')]
    for r in rows:
        assert r['resolution'] == '64' and float(r['latency_ms']) > 0
        assert float(r['throughput_img_s']) > 0 and r['throughput_batch'] == '2'
    by_mode = {m: r for m, r in zip(modes, rows)}
    # fusion removes branches: fewer parameters, same GMACs as timm's fused model
    assert float(by_mode[('fastvit-t8', 'fused')]['params_m']) < \
        float(by_mode[('fastvit-t8', 'unfused')]['params_m'])
    assert abs(float(by_mode[('fastvit-t8', 'fused')]['gmacs_256']) - 0.684) < 0.01
    png = tmp_path / 'benchmark.png'
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    text = capsys.readouterr().out
    assert '| fastvit-t8 | fused-ort |' in text and 'fused-ort / timm fused-ort at 64' in text


def test_benchmark_tool_rejects_bad_resolution():
    from hybridvit.utils.cli import UserError
    with pytest.raises(UserError, match='multiples of 32'):
        _tool().parse_args(['--backbone', 'fastvit-t8', '--resolutions', '100'])
