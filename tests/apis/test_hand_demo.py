"""Hand-mesh mode of the inference API and the demo (crop, predict, map back, write the mesh)."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/hand/hand-mesh_fastvit-t8_mini-freihand-128.py')


@pytest.fixture(scope='module')
def mini_freihand(tmp_path_factory):
    from hybridvit.datasets.generators import make_mini_freihand
    root = str(tmp_path_factory.mktemp('hand') / 'mini_freihand')
    make_mini_freihand(root, num_train=4, num_eval=2, image_size=64, num_versions=1, verbose=False)
    return root


def _cfg_options(root):
    return {'model.head.faces': f'{root}/mesh_faces.json'}


def test_inference_maps_the_crop_back_to_the_image(mini_freihand):
    from hybridvit.apis import inference_model, init_model
    # the plain soft-argmax: the local one starts at each heatmap's argmax, which for the
    # near-flat maps of random weights flips between near-equal cells on float noise
    model = init_model(CONFIG, None, cfg_options={
        **_cfg_options(mini_freihand), 'model.head.keypoint_branch.test_window': None})
    img = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)
    full = inference_model(model, img)
    boxed = inference_model(model, img, bbox=(40, 20, 100, 80))
    for out in (full, boxed):
        assert out.pred_joints.shape == (21, 3) and out.pred_verts.shape == (778, 3)
        assert out.pred_keypoints_2d.shape == (21, 2) and out.pred_verts_2d.shape == (778, 2)
        assert np.isfinite(out.pred_keypoints_2d).all()
    # same crop content -> same normalised prediction; in image pixels it is scaled and shifted
    # by the crop: the 60-px box around (70, 50) vs the 160-px square around (80, 60)
    crop = inference_model(model, img[20:80, 40:100].copy())
    np.testing.assert_allclose(boxed.pred_keypoints_2d,
                               crop.pred_keypoints_2d + np.array([40, 20]), atol=1e-3)


def test_demo_hand_mode_writes_picture_and_obj(mini_freihand, tmp_path):
    img = osp.join(mini_freihand, 'evaluation', 'rgb', '00000000.jpg')
    out = str(tmp_path / 'hand.png')
    proc = subprocess.run(
        [sys.executable, 'demo/image_demo.py', img, CONFIG, '--out-file', out, '--bbox', '4', '4',
         '60', '60', '--cfg-options', f'model.head.faces={mini_freihand}/mesh_faces.json'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert osp.isfile(out)
    lines = open(str(tmp_path / 'hand.obj')).read().splitlines()
    assert sum(line.startswith('v ') for line in lines) == 778
    assert sum(line.startswith('f ') for line in lines) > 0

    bad = subprocess.run(
        [sys.executable, 'demo/image_demo.py', img, CONFIG, '--bbox', '10', '10', '500', '20',
         '--cfg-options', f'model.head.faces={mini_freihand}/mesh_faces.json'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and '--bbox' in bad.stderr


def test_draw_hand_enlarges_small_crops_and_scales_points():
    from hybridvit.visualization import draw_hand
    img = np.zeros((64, 48, 3), np.uint8)
    joints = np.tile([[10.0, 20.0]], (21, 1))  # all joints on one pixel
    vis = draw_hand(img, joints)
    assert vis.shape == (384, 288, 3)  # factor ceil(384 / 64) = 6 on both sides
    y, x = np.argwhere(vis.any(-1)).mean(0)
    assert abs(x - (10.5 * 6 - 0.5)) < 1 and abs(y - (20.5 * 6 - 0.5)) < 1
    assert draw_hand(np.zeros((400, 500, 3), np.uint8), joints).shape == (400, 500, 3)
    assert draw_hand(img, joints, min_side=0).shape == img.shape


def test_gallery_tool_draws_rows_and_scores_all_samples(mini_freihand, tmp_path):
    import cv2
    out = str(tmp_path / 'gallery.png')
    proc = subprocess.run(
        [sys.executable, 'tools/analysis/hand_mesh_gallery.py', CONFIG, 'none', '--num', '2',
         '--rows', '1', '--out', out, '--cfg-options',
         f'model.head.faces={mini_freihand}/mesh_faces.json',
         f'test_dataloader.dataset.data_root={mini_freihand}'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'mean 2D keypoint error over 2 samples' in proc.stdout
    assert proc.stdout.count('[gallery]') == 2
    assert cv2.imread(out).shape == (256, 3 * 256, 3)  # one row: prediction, truth, mesh

    bad = subprocess.run(
        [sys.executable, 'tools/analysis/hand_mesh_gallery.py', CONFIG, 'none', '--rows', '0'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and '--rows' in bad.stderr


def test_camera_check_tool_reports_every_ratio(mini_freihand):
    import json
    proc = subprocess.run(
        [sys.executable, 'tools/analysis/hand_mesh_camera_check.py', CONFIG, 'none', '--num', '2',
         '--cfg-options', f'model.head.faces={mini_freihand}/mesh_faces.json',
         'test_dataloader.dataset.pipeline.1.out_size=64',
         f'test_dataloader.dataset.data_root={mini_freihand}'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout[proc.stdout.index('{'):])
    assert report['samples'] == 2
    # (no 'depth scale': the recipe's head reads the depth from its lifted keypoints' bones)
    assert 'depth scale pred/true' not in report
    for key in ('scale pred/true', '2D spread pred/true', 'bone 9-10 pred/true',
                'hand size pred/true', 'mesh vs skeleton alignment, deg', 'root depth pred/true'):
        median, p10, p90 = (float(v) for v in report[key].replace('[', '').replace(']', '')
                            .replace(',', '').split())
        assert p10 <= median <= p90, (key, report[key])
    # the keypoint-branch head of the mini recipe also reports its soft-argmax keypoints
    assert 0 < report['2D px (soft-argmax keypoints)'] < 64 * 1.5
    assert 0 < report['2D px (projected skeleton)'] < 64 * 1.5
    assert report['root depth error mm'] > 0  # the samples carry K and the camera-frame root
    # the submission's error: aligned below unaligned (random weights: the unaligned error is
    # hundreds of mm, the similarity alignment removes the misplacement)
    pa, cam = report['PA-MPJPE mm'], report['camera-frame MPJPE mm']
    assert 0 < pa <= cam, report
    assert 0 < report['camera-frame MPJPE at the true root depth mm'], report
    assert report['root depth mean |log(pred/true)|'] > 0
    # the depth read from the true keypoints with 2D errors of the model's size is imprecise but
    # finite (random weights: errors of tens of pixels)
    assert 0 < report['root depth mean |log|, true keypoints + noise of that 2D error'] < 5, report

    bad = subprocess.run(
        [sys.executable, 'tools/analysis/hand_mesh_camera_check.py', CONFIG, 'none', '--num', '-1'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and '--num' in bad.stderr
