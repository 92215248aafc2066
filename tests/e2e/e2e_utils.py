"""Helpers for the slow end-to-end tests: run a repository tool, read its metrics."""
import json
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_tool(*args, timeout=3600):
    """Run a repository tool with this interpreter; fail with its output on error."""
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'{" ".join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n'
                    f'{proc.stderr[-3000:]}')
    return proc


def read_metrics(work_dir):
    with open(osp.join(work_dir, 'test_metrics.json')) as f:
        return json.load(f)['metrics']

