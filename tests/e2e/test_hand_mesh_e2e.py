"""Slow end-to-end: a hand-mesh model trained on the procedural mini FreiHAND set beats the
mean-pose predictor clearly."""
import json

import pytest

from e2e_utils import read_metrics, run_tool

CONFIG = 'configs/hand/hand-mesh_fastvit-t8_mini-freihand-128.py'


@pytest.mark.slow
def test_hand_mesh_beats_mean_pose(tmp_path):
    data = str(tmp_path / 'mini_freihand')
    run_tool('tools/dataset_converters/make_mini_freihand.py', data, '--num-train', '256',
             '--num-eval', '64', '--image-size', '128')
    work = str(tmp_path / 'work')
    opts = ['--cfg-options', f'train_dataloader.dataset.data_root={data}',
            f'val_dataloader.dataset.data_root={data}', f'test_dataloader.dataset.data_root={data}',
            f'model.head.faces={data}/mesh_faces.json',
            f'test_evaluator.outfile_prefix={work}/pred']
    run_tool('tools/train.py', CONFIG, '--work-dir', work, *opts)
    run_tool('tools/test.py', CONFIG, f'{work}/iter_1500.pth', '--work-dir', work + '/test', *opts)
    trained = read_metrics(work + '/test')
    baseline_file = str(tmp_path / 'baseline.json')
    # the baseline tool reads the config's data_root: point it at the same data
    cfg_copy = tmp_path / 'cfg.py'
    cfg_copy.write_text(f"_base_ = '{__import__('os').path.abspath(CONFIG)}'\n"
                        f"data_root = '{data}'\n"
                        f"train_dataloader = dict(dataset=dict(data_root=data_root))\n"
                        f"test_dataloader = dict(dataset=dict(data_root=data_root))\n"
                        f"model = dict(head=dict(faces=data_root + '/mesh_faces.json'))\n")
    run_tool('tools/analysis/hand_mesh_baseline.py', str(cfg_copy), '--out', baseline_file)
    with open(baseline_file) as f:
        baseline = json.load(f)
    print(f'trained: {trained}\nmean-pose baseline: {baseline}')  # shown with -s
    assert trained['freihand/pa_mpjpe'] < 0.7 * baseline['pa_mpjpe'], (trained, baseline)
    assert trained['freihand/f_15mm'] > baseline['f_15mm'], (trained, baseline)
