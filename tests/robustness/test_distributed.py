"""``tools/dist_train.sh CONFIG 2`` trains with two processes on a CPU-only machine (gloo, DDP
without device ids, SyncBN -> BN: runner_setup.setup_cpu_distributed) and saves a checkpoint."""
import os.path as osp
import socket

import pytest
import torch

from _tiny import run_script, tool_env, write_seg_config
from hybridvit.compat import load_any_checkpoint
from hybridvit.datasets.generators import make_mini_ade


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU (gloo) path')
def test_dist_train_two_cpu_processes(tmp_path):
    root = str(tmp_path / 'mini_ade')
    make_mini_ade(root, num_train=4, num_val=1, image_size=64, seed=5, quiet=True)
    config = write_seg_config(tmp_path, root, max_iters=4, interval=4)
    work_dir = str(tmp_path / 'work')
    env = tool_env()
    env['MASTER_PORT'] = str(_free_port())
    proc = run_script(['tools/dist_train.sh', config, '2', '--work-dir', work_dir], env=env,
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:] + proc.stdout[-2000:]
    assert 'Distributed training: True' in proc.stdout
    assert "backend='gloo'" in proc.stdout
    ckpt = load_any_checkpoint(osp.join(work_dir, 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    state = ckpt['state_dict']
    assert not any(k.startswith('module.') for k in state)
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_4.pth')
    with open(osp.join(work_dir, osp.basename(config))) as f:  # the config the run used
        dumped = f.read()
    assert 'SyncBN' not in dumped and 'device_ids=None' in dumped
