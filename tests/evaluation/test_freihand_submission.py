"""``tools/test.py CONFIG CKPT --out DIR`` writes a FreiHAND submission the official evaluation
procedure scores exactly as our metric does, also for an evaluation split without labels."""
import json
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from freihand_eval import official_eval, read_scores

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = 'configs/hand/hand-mesh_fastvit-t8_mini-freihand-128.py'
# our metric names -> the server's (scores.txt), errors mm -> cm
SERVER = dict(mpjpe='xyz_mean3d', auc_j='xyz_auc3d', pa_mpjpe='xyz_al_mean3d',
              pa_auc_j='xyz_al_auc3d', mpvpe='mesh_mean3d', auc_v='mesh_auc3d',
              pa_mpvpe='mesh_al_mean3d', pa_auc_v='mesh_al_auc3d', f_5mm='f_score_5',
              pa_f_5mm='f_al_score_5', f_15mm='f_score_15', pa_f_15mm='f_al_score_15')


def _test_tool(*args):
    proc = subprocess.run([sys.executable, 'tools/test.py', *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    from mmengine.config import Config

    import hybridvit.models  # noqa: F401
    from hybridvit.datasets.generators.mini_freihand import make_mini_freihand
    from hybridvit.registry import MODELS
    tmp = tmp_path_factory.mktemp('submission')
    labelled = str(tmp / 'mini')
    make_mini_freihand(labelled, num_train=2, num_eval=6, image_size=64, num_versions=1,
                       verbose=False)
    unlabelled = str(tmp / 'unlabelled')  # what FreiHAND gives for its evaluation images
    shutil.copytree(labelled, unlabelled)
    for name in ('evaluation_xyz.json', 'evaluation_verts.json'):
        (tmp / 'unlabelled' / name).unlink()
    cfg = Config.fromfile(osp.join(ROOT, CONFIG))
    cfg.model.head.faces = osp.join(labelled, 'mesh_faces.json')
    torch.manual_seed(0)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('hybridvit'):  # other tests may leave mmdet/mmseg
        model = MODELS.build(cfg.model)
    with torch.no_grad():  # a camera that puts hands at varied depths and places
        cam = model.head.fc_cam or model.head.keypoint_branch.predict_maps
        cam.weight.normal_(0, 0.05)
        model.head.fc_out.weight.normal_(0, 0.01)
    ckpt = str(tmp / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    return tmp, labelled, unlabelled, ckpt


def _opts(data_root):
    return ['--cfg-options', f'test_dataloader.dataset.data_root={data_root}',
            'test_dataloader.dataset.pipeline.1.out_size=64', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False',
            f'model.head.faces={data_root}/mesh_faces.json']


def test_out_dir_gets_pred_json_scored_like_the_server(setup):
    tmp, labelled, unlabelled, ckpt = setup
    # the evaluation split without labels: only the submission file is written
    sub = tmp / 'freihand_pred'
    assert not sub.exists()
    _test_tool(CONFIG, ckpt, '--out', str(sub), '--work-dir', str(tmp / 'w1'), *_opts(unlabelled))
    assert sorted(p.name for p in sub.iterdir()) == ['pred.json']
    xyz, verts = json.load(open(sub / 'pred.json'))
    assert np.array(xyz).shape == (6, 21, 3) and np.array(verts).shape == (6, 778, 3)
    # camera frame: the recovered roots lie in front of the camera, not at the origin
    assert (np.array(xyz)[:, 0, 2] > 0.1).all()

    # the official procedure on that file == our metric on the labelled split
    official = official_eval(labelled, str(sub / 'pred.json'))
    labelled_out = tmp / 'labelled_pred'
    _test_tool(CONFIG, ckpt, '--out', str(labelled_out), '--work-dir', str(tmp / 'w2'),
               *_opts(labelled))
    ours = json.load(open(tmp / 'w2' / 'test_metrics.json'))['metrics']
    for key, server_key in SERVER.items():
        value = ours[f'freihand/{key}']
        expected = official[server_key] * (10 if key.endswith(('mpjpe', 'mpvpe')) else 1)
        assert value == pytest.approx(expected, rel=1e-4, abs=1e-4), key
    # both runs wrote the same predictions; with labels also the server's scores.txt
    assert json.load(open(labelled_out / 'pred.json')) == [xyz, verts]
    written = read_scores(labelled_out / 'scores.txt')
    assert list(written) == list(official)
    for key, value in official.items():
        assert written[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
