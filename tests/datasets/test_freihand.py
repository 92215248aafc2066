"""FreiHAND dataset, hand transforms and the mini-FreiHAND generator (data made in tmp_path)."""
import filecmp
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch

from hybridvit.datasets.freihand import FreiHANDDataset
from hybridvit.datasets.generators.mini_freihand import (NUM_VERTS, make_mini_freihand,
                                                         procedural_hand_faces)
from hybridvit.datasets.transforms import (HandColorJitter, HandCropResize, HandRandomRotate,
                                          LoadHandImage, PackHandMeshInputs, to_bgr_uint8)
from hybridvit.registry import DATASETS

NUM_TRAIN, NUM_EVAL = 6, 3


@pytest.fixture(scope='module')
def mini_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mini_freihand'))
    make_mini_freihand(root, num_train=NUM_TRAIN, num_eval=NUM_EVAL, seed=0, image_size=64,
                       num_versions=2, verbose=False)
    return root


def _project(points, K):
    uvw = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def test_reads_generated_layout(mini_root):
    ds = DATASETS.build(dict(type='FreiHANDDataset', data_root=mini_root, split='train',
                             num_samples=NUM_TRAIN, versions=(0, 1)))
    assert isinstance(ds, FreiHANDDataset) and len(ds) == 2 * NUM_TRAIN
    info = ds.get_data_info(NUM_TRAIN + 2)  # version 1 of sample 2
    # the official numbering (fh_utils.sample_version.map_id): idx + 32560 * version
    assert info['img_path'].endswith('training/rgb/00032562.jpg')
    assert info['image_id'] == 32562
    assert info['version'] == 1 and info['ann_idx'] == 2
    assert osp.exists(info['img_path'])
    assert info['joints_3d'].shape == (21, 3) and info['verts_3d'].shape == (NUM_VERTS, 3)
    np.testing.assert_allclose(info['keypoints_2d'], _project(info['joints_3d'], info['K']),
                               atol=1e-3)
    assert 0.01 < info['scale'] < 0.1  # reference bone length in metres
    # the same annotation is shared by all versions
    np.testing.assert_array_equal(ds.get_data_info(2)['joints_3d'], info['joints_3d'])


def _official_read_img(idx, base_path, set_name, version):
    """lmb-freiburg/freihand utils/fh_utils.py read_img + sample_version.map_id, restated."""
    versions = ['gs', 'hom', 'sample', 'auto']
    image_id = idx + 32560 * versions.index(version)
    return cv2.imread(osp.join(base_path, set_name, 'rgb', '%08d.jpg' % image_id))


def test_generated_layout_is_what_the_official_toolbox_reads(mini_root):
    for idx in range(NUM_TRAIN):
        for version in ('gs', 'hom'):  # the two generated versions
            assert _official_read_img(idx, mini_root, 'training', version) is not None
        mask = cv2.imread(osp.join(mini_root, 'training', 'mask', '%08d.jpg' % idx),
                          cv2.IMREAD_GRAYSCALE)  # fh_utils.read_msk
        assert mask.shape == (64, 64)
        # the silhouette covers the projected joints (JPEG blurs edges: test the joint pixels)
        with open(osp.join(mini_root, 'training_xyz.json')) as f:
            xyz = np.array(json.load(f)[idx])
        with open(osp.join(mini_root, 'training_K.json')) as f:
            K = np.array(json.load(f)[idx])
        uv = np.round(_project(xyz, K)).astype(int)
        inside = (uv >= 0).all(1) & (uv < 64).all(1)
        assert (mask[uv[inside, 1], uv[inside, 0]] > 127).mean() > 0.9
        assert 0.02 < (mask > 127).mean() < 0.6
    rgb = sorted(os.listdir(osp.join(mini_root, 'training', 'rgb')))
    assert rgb == ['%08d.jpg' % (i + 32560 * v) for v in range(2) for i in range(NUM_TRAIN)]
    assert not osp.exists(osp.join(mini_root, 'evaluation', 'mask'))


def test_mano_root_entries_recover_the_root(mini_root):
    """split_theta / get_focal_pp / recover_root of the official utils/model.py, restated: the
    last three mano entries give back the root joint."""
    for split in ('training', 'evaluation'):
        with open(osp.join(mini_root, f'{split}_mano.json')) as f:
            mano = np.array(json.load(f))[:, 0]  # (N, 61)
        with open(osp.join(mini_root, f'{split}_K.json')) as f:
            Ks = np.array(json.load(f))
        with open(osp.join(mini_root, f'{split}_xyz.json')) as f:
            xyz = np.array(json.load(f))
        for theta, K, joints in zip(mano, Ks, xyz):
            uv_root, scale = theta[58:60], theta[60:]
            focal, pp = 0.5 * (K[0, 0] + K[1, 1]), K[:2, 2]
            root = np.concatenate([uv_root - pp, [focal]]) / scale
            np.testing.assert_allclose(root, joints[0], atol=2e-5)


def test_splits(mini_root):
    train = FreiHANDDataset(mini_root, split='train', num_val=2, versions=(0,))
    val = FreiHANDDataset(mini_root, split='val', num_val=2)
    ev = FreiHANDDataset(mini_root, split='evaluation', with_mano=True)
    assert len(train) == NUM_TRAIN - 2 and len(val) == 2 and len(ev) == NUM_EVAL
    assert [val.get_data_info(i)['ann_idx'] for i in range(2)] == [4, 5]
    assert ev.get_data_info(0)['img_path'].endswith('evaluation/rgb/00000000.jpg')
    assert ev.get_data_info(0)['mano'].shape == (61,)
    with pytest.raises(ValueError, match='split'):
        FreiHANDDataset(mini_root, split='test')
    with pytest.raises(ValueError, match='num_val'):
        FreiHANDDataset(mini_root, split='val')


def test_missing_file_is_named(mini_root, tmp_path):
    root = tmp_path / 'broken'
    shutil.copytree(mini_root, root)
    (root / 'training_xyz.json').unlink()
    with pytest.raises(FileNotFoundError, match='training_xyz.json'):
        FreiHANDDataset(str(root), split='train')
    (root / 'training_K.json').unlink()
    with pytest.raises(FileNotFoundError, match='training_K.json'):
        FreiHANDDataset(str(root), split='train')
    shutil.rmtree(root / 'evaluation')
    with pytest.raises(FileNotFoundError, match='evaluation/rgb'):
        FreiHANDDataset(str(root), split='evaluation')


def test_wrong_length_and_shape_are_named(mini_root, tmp_path):
    root = tmp_path / 'bad'
    shutil.copytree(mini_root, root)
    verts = json.load(open(root / 'training_verts.json'))
    json.dump(verts[:-1], open(root / 'training_verts.json', 'w'))
    with pytest.raises(ValueError, match=r'training_verts\.json: has 5 entries, expected 6'):
        FreiHANDDataset(str(root), split='train')
    # wrong inner shape: sample 3 has 20 joints
    json.dump(verts, open(root / 'training_verts.json', 'w'))
    xyz = json.load(open(root / 'training_xyz.json'))
    xyz[3] = xyz[3][:20]
    json.dump(xyz, open(root / 'training_xyz.json', 'w'))
    with pytest.raises(ValueError, match=r'training_xyz\.json: entry 3 has shape \(20, 3\), '
                                         r'expected \(21, 3\)'):
        FreiHANDDataset(str(root), split='train')
    # num_samples that does not match the files
    with pytest.raises(ValueError, match=r'training_K\.json: has 6 entries, expected 7'):
        FreiHANDDataset(str(root), split='train', num_samples=7)


def _pipeline_sample(ds, index, transforms):
    results = ds.get_data_info(index)
    for t in transforms:
        results = t(results)
    return results


def test_transforms_keep_projection_consistent(mini_root):
    ds = FreiHANDDataset(mini_root, split='train', versions=(0,))
    np.random.seed(0)
    transforms = [LoadHandImage(), HandRandomRotate(max_angle=90), HandColorJitter(),
                  HandCropResize(48, center_mode='keypoints', scale_range=(0.9, 1.3),
                                 shift=0.1)]
    for index in range(3):
        results = _pipeline_sample(ds, index, transforms)
        assert results['img'].shape == (48, 48, 3) and results['img'].dtype == np.uint8
        np.testing.assert_allclose(_project(results['joints_3d'], results['K']),
                                   results['keypoints_2d'], atol=1e-3)
        packed = PackHandMeshInputs()(results)
        inputs, sample = packed['inputs'], packed['data_samples']
        assert inputs.shape == (3, 48, 48) and inputs.dtype == torch.uint8
        assert torch.allclose(sample.gt_joints[0], torch.zeros(3))
        assert sample.gt_verts.shape == (NUM_VERTS, 3)
        cam_joints = (sample.gt_joints + sample.gt_root).numpy()
        np.testing.assert_allclose(_project(cam_joints, sample.K.numpy()),
                                   sample.gt_keypoints_2d.numpy(), atol=1e-3)
        assert float(sample.root_depth) == pytest.approx(float(sample.gt_root[2]))
        assert sample.img_shape == (48, 48)


def test_rotation_moves_pixels_with_keypoints():
    """A dot drawn at a keypoint lands on the transformed keypoint (fx != fy, skewless K)."""
    K = np.array([[120.0, 0, 40.0], [0, 90.0, 30.0], [0, 0, 1]])
    joints = np.array([[0.05, -0.03, 0.5], [0.0, 0.0, 0.5]])
    img = np.zeros((64, 80, 3), np.uint8)
    uv = _project(joints, K)
    cv2.circle(img, tuple(int(round(v)) for v in uv[0]), 2, (255, 255, 255), -1)
    results = dict(img=img, K=K, joints_3d=joints, keypoints_2d=uv.astype(np.float32))
    results = HandRandomRotate.rotate(results, 50.0)
    np.testing.assert_allclose(_project(results['joints_3d'], results['K']),
                               results['keypoints_2d'], atol=1e-4)
    ys, xs = np.nonzero(results['img'][..., 0] > 100)
    centroid = np.array([xs.mean(), ys.mean()])
    np.testing.assert_allclose(centroid, results['keypoints_2d'][0], atol=1.0)
    # the principal point (joint 1 on the optical axis) does not move
    np.testing.assert_allclose(results['keypoints_2d'][1], [40.0, 30.0], atol=1e-4)


@pytest.mark.parametrize('kind', ['gray', 'rgba', 'u16', 'gray_alpha'])
def test_image_formats_become_bgr_uint8(tmp_path, kind):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(10, 12, 3), dtype=np.uint8)
    if kind == 'gray':
        img = base[..., 0]
    elif kind == 'rgba':
        img = np.concatenate([base, np.full((10, 12, 1), 7, np.uint8)], axis=2)
    elif kind == 'u16':
        img = base.astype(np.uint16) * 257
    else:
        img = np.stack([base[..., 0], base[..., 1]], axis=2)
    path = str(tmp_path / f'{kind}.png')
    if kind == 'gray_alpha':  # OpenCV cannot write 2-channel PNGs
        from PIL import Image
        Image.fromarray(img, mode='LA').save(path)
    else:
        assert cv2.imwrite(path, img)
    out = LoadHandImage()(dict(img_path=path))['img']
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    expected = {'gray': np.repeat(base[..., :1], 3, 2), 'rgba': base, 'u16': base,
                'gray_alpha': np.repeat(base[..., :1], 3, 2)}[kind]
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ValueError, match='unsupported image shape'):
        to_bgr_uint8(np.zeros((2, 2, 5), np.uint8))


def test_generator_is_reproducible(tmp_path):
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    for root in (a, b):
        make_mini_freihand(root, num_train=2, num_eval=1, seed=5, image_size=32,
                           num_versions=2, verbose=False)
    names = ['training_K.json', 'training_xyz.json', 'training_verts.json',
             'training/rgb/00032561.jpg', 'training/mask/00000001.jpg',
             'evaluation/rgb/00000000.jpg', 'evaluation_xyz.json']
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors
    xyz = np.array(json.load(open(osp.join(a, 'training_xyz.json'))))
    assert xyz.shape == (2, 21, 3) and np.all(xyz[..., 2] > 0.3)
    faces = procedural_hand_faces()
    assert faces.min() == 0 and faces.max() == NUM_VERTS - 1
    np.testing.assert_array_equal(np.array(json.load(open(osp.join(a, 'mesh_faces.json')))),
                                  faces)


@pytest.mark.parametrize('max_tilt', [30.0, 90.0])
def test_view_distribution_respects_max_tilt(max_tilt):
    from hybridvit.datasets.generators.mini_freihand import _random_rotation
    rng = np.random.default_rng(0)
    rots = np.stack([_random_rotation(rng, max_tilt) for _ in range(2000)])
    np.testing.assert_allclose(rots @ rots.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rots.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rots), 1.0, atol=1e-12)
    back_z = rots[:, 2, 2]  # camera-frame z of the hand's back normal (local +z)
    tilt = np.degrees(np.arccos(np.abs(back_z)))
    assert tilt.max() <= max_tilt + 1e-9
    assert 0.4 < np.mean(back_z < 0) < 0.6  # back towards the camera half of the time
    if max_tilt == 90.0:  # uniform rotations: |cos| of the view angle is uniform on [0, 1]
        assert np.abs(np.mean(np.abs(back_z)) - 0.5) < 0.02
    with pytest.raises(ValueError, match='max_tilt must be in'):
        make_mini_freihand('unused', max_tilt=120.0, verbose=False)


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_palm_and_back_views_look_different(seed):
    """The renderer's palm / back cue: the same pose seen from the palm and from the back (its
    mirror image, which the silhouette alone cannot tell apart) differ in skin colour: palms are
    pinker (lower R/B for these BGR tones) than the back of the hand. Depth shading
    scales all channels alike, so the R/B ratio isolates the hue."""
    from hybridvit.datasets.generators import mini_freihand as mf
    scene = mf.sample_scene(np.random.default_rng(seed), 96, max_tilt=1e-6)
    pose, K = scene['pose'], scene['K']
    ratio = {}
    for flip in (False, True):  # half a turn about the camera's y axis shows the other side
        rot = (mf._axis_angle(np.array([0.0, 1.0, 0.0]), np.pi) if flip else np.eye(3)) \
            @ pose['rot']
        joints = (pose['joints'] - pose['local_centre']) @ rot.T + pose['centre']
        verts = (pose['verts'] - pose['local_centre']) @ rot.T + pose['centre']
        img, mask = mf._render(np.random.default_rng(0), dict(pose, rot=rot), joints, verts, K,
                               [np.zeros((96, 96, 3), np.uint8)], 96, version=2)
        palm_facing = rot[2, 2] > 0  # local +z (out of the back) points away from the camera
        px = img[mask > 127].astype(np.float64)  # (N, 3) BGR
        ratio[palm_facing] = np.median(px[:, 2] / np.maximum(px[:, 0], 1))
    assert set(ratio) == {True, False}
    assert ratio[False] - ratio[True] > 0.1, ratio  # seed 0: 1.75 (back) vs 1.58 (palm)
