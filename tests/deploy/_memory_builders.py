"""Builders for ``hybridvit.deploy.benchmark.peak_rss_increase_mb`` with a known answer
(imported by name in the spawned measuring child; tests/deploy is on its ``sys.path``)."""
import numpy as np


def allocating_callable(spec: dict, resolution: int, threads: int):
    """A callable that allocates and writes ``resolution * spec['mb_per_px']`` MB, then frees
    them: its peak RSS increase is that many MB (plus a little interpreter noise)."""
    size = int(resolution * spec['mb_per_px'] * 2 ** 20)

    def run(x):
        buf = np.ones(size, np.uint8)  # np.ones writes every page: resident, not just mapped
        return int(buf[::4096].sum())

    return run
