"""Rotation test-time augmentation (HandMeshTTAModel, HandRotate, tools/test.py --tta)."""
import os.path as osp

import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

import hybridvit.datasets.transforms  # noqa: F401  (registers the transforms)
import hybridvit.models  # noqa: F401
from hybridvit.datasets.freihand import FreiHANDDataset
from hybridvit.datasets.generators.mini_freihand import make_mini_freihand
from hybridvit.models.estimators import HandMeshTTAModel
from hybridvit.models.heads.hand_camera import lift_keypoints
from hybridvit.models.heads.procrustes import rigid_align, similarity_fit
from hybridvit.registry import MODELS
from hybridvit.utils.errors import UserError

ANGLES = (0, 90, 180, 270)


@pytest.fixture(scope='module')
def mini_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('mini_freihand_tta'))
    make_mini_freihand(root, num_train=4, num_eval=1, seed=1, image_size=64, num_versions=1,
                       verbose=False)
    return root


def _dataset(root, angles=ANGLES, crop_scales=(1.0,)):
    views = [dict(type='HandRotate', angle=a) for a in angles]
    crops = [dict(type='HandCropResize', out_size=64, scale_range=(s, s)) for s in crop_scales]
    pipeline = [dict(type='LoadHandImage'),
                dict(type='TestTimeAug',
                     transforms=[views, crops, [dict(type='PackHandMeshInputs')]])]
    # mmcv's TestTimeAug builds the views in the default scope, as the runner sets it
    with DefaultScope.overwrite_default_scope('hybridvit'):
        return FreiHANDDataset(root, split='train', versions=(0,), pipeline=pipeline)


def _estimator():
    import hybridvit.models.backbones.fastvit  # noqa: F401  (registers FastViT)
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='HandMeshEstimator',
        data_preprocessor=dict(type='ImgDataPreprocessor', mean=[120.0] * 3, std=[60.0] * 3,
                               bgr_to_rgb=True),
        backbone=dict(type='hybridvit.FastViT', arch='t8', out_indices=(0, 1, 2, 3)),
        head=dict(type='HandMeshHead', in_channels=384, hidden_dims=(32,),
                  keypoint_branch=dict(in_channels=(48, 96, 192, 384), in_index=(0, 1, 2, 3),
                                       channels=8))))
    with torch.no_grad():
        model.head.fc_out.weight.normal_(0, 0.05)  # a non-degenerate hand
    return model.eval()


def _oracle_views(samples):
    """Each view's 'prediction' is its own (rotated, zoomed) ground truth: 2.5D keypoints from
    its perspective camera (pixels; root-relative depths in pixels at the root's depth) and the
    labelled root."""
    views = []
    for ds in samples:
        ds = ds.clone()
        ds.pred_joints, ds.pred_verts = ds.gt_joints, ds.gt_verts
        focal = (ds.K[0, 0] + ds.K[1, 1]) / 2
        ds.pred_keypoints_2d = ds.pred_keypoints_uv = ds.gt_keypoints_2d
        ds.pred_keypoints_depth = focal * ds.gt_joints[:, 2] / ds.gt_root[2]
        ds.pred_cam = torch.tensor([3.0, 0.0, 0.0])
        ds.pred_root = ds.gt_root
        views.append(ds)
    return views


@pytest.mark.parametrize('crop_scales', [(1.0,), (1.0, 1.25)])
def test_rotated_views_map_back_onto_the_unrotated_labels(mini_root, crop_scales):
    """Views made by the real pipeline whose predictions equal their own rotated (and zoomed)
    labels merge to exactly the first view's labels: 2D through K_0 R^-1 K_k^-1, 3D by R_z^-1,
    depths by the zoom, and the head's fit places the merged hand in the labelled orientation."""
    data = _dataset(mini_root, crop_scales=crop_scales)[0]
    samples = data['data_samples']
    assert [s.rotation for s in samples] == [float(a) for a in ANGLES for _ in crop_scales]
    # the views really differ: the 90 deg labels are the 0 deg ones rotated
    assert not torch.allclose(samples[1].gt_keypoints_2d, samples[0].gt_keypoints_2d, atol=1)
    tta = HandMeshTTAModel(module=_estimator())
    merged, = tta.merge_preds([_oracle_views(samples)])
    plain, = _oracle_views(samples[:1])
    torch.testing.assert_close(merged.pred_joints, plain.gt_joints, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(merged.pred_verts, plain.gt_verts, atol=1e-5, rtol=1e-4)
    for key in ('pred_keypoints_uv', 'pred_keypoints_2d'):
        torch.testing.assert_close(merged.get(key), plain.pred_keypoints_uv, atol=2e-3,
                                   rtol=0, msg=key)
    torch.testing.assert_close(merged.pred_keypoints_depth, plain.pred_keypoints_depth,
                               atol=1e-4, rtol=1e-5)
    # the labels, metainfo and intrinsics kept are those of the unrotated view
    torch.testing.assert_close(merged.gt_joints, plain.gt_joints)
    assert merged.rotation == 0 and merged.img_path == plain.img_path
    assert merged.pred_joints_cam.shape == (21, 3) and merged.pred_verts_cam.shape[1] == 3


def test_single_unrotated_view_equals_plain_prediction(mini_root):
    model = _estimator()
    tta = HandMeshTTAModel(module=model)
    batch = pseudo_collate([_dataset(mini_root, angles=(0,))[i] for i in range(2)])
    with torch.no_grad():
        merged = tta.test_step(batch)
        plain = model.test_step(dict(inputs=batch['inputs'][0],
                                     data_samples=batch['data_samples'][0]))
    for m, p in zip(merged, plain):
        # (not pred_cam: the weak-perspective scale of the regressed hand, the merged one has
        # the reference bone's size)
        for key in ('pred_joints', 'pred_verts', 'pred_keypoints_2d',
                    'pred_keypoints_uv', 'pred_keypoints_depth', 'pred_joints_cam',
                    'pred_verts_cam', 'pred_root', 'pred_mesh_joints'):
            torch.testing.assert_close(m.get(key), p.get(key), atol=1e-5, rtol=1e-4,
                                       msg=key)


def test_four_views_merge_shape_and_keypoints_separately(mini_root):
    """With four views: the 2.5D keypoints are the mean of the views' keypoints rotated back
    about the principal point (fx == fy), the regressed hand is the mean of the views' hands
    after rotating each onto the first (up to the final placement, a similarity), the root is
    at the mean of the views' root depths, and the joints are the head's mean of the lifted
    keypoints and the placed hand's joints."""
    model = _estimator()
    tta = HandMeshTTAModel(module=model)
    batch = pseudo_collate([_dataset(mini_root)[0]])
    with torch.no_grad():
        merged, = tta.test_step(batch)
        views = [model.test_step(dict(inputs=batch['inputs'][k],
                                      data_samples=batch['data_samples'][k]))[0]
                 for k in range(len(ANGLES))]
    pp = views[0].K[:2, 2]
    uv, depth, hands = 0, 0, []
    for view, angle in zip(views, ANGLES):
        c, s = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[angle]
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
        uv = uv + (pp + (view.pred_keypoints_uv - pp) @ rot) / len(ANGLES)
        depth = depth + view.pred_keypoints_depth / len(ANGLES)
        rot3 = torch.eye(3)
        rot3[:2, :2] = rot
        hands.append(torch.cat([view.pred_mesh_joints, view.pred_verts]) @ rot3)
    torch.testing.assert_close(merged.pred_keypoints_uv, uv, atol=1e-3, rtol=0)
    torch.testing.assert_close(merged.pred_keypoints_depth, depth, atol=1e-4, rtol=1e-4)
    mean = sum(rigid_align(h[None], hands[0][None])[0] for h in hands) / len(hands)
    hand = torch.cat([merged.pred_mesh_joints, merged.pred_verts])
    rot, scale, shift = similarity_fit(mean[None], hand[None])
    torch.testing.assert_close(scale * mean @ rot[0].T + shift, hand, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(merged.pred_mesh_joints, views[0].pred_mesh_joints, atol=1e-5)
    roots = torch.stack([v.pred_root for v in views])
    assert float(roots[:, 2].std()) > 0.01 * float(roots[:, 2].mean())
    torch.testing.assert_close(merged.pred_root[2], roots[:, 2].mean(), atol=0, rtol=1e-5)
    lifted = lift_keypoints(uv[None], depth[None], views[0].K[None])[0] * merged.pred_root[2]
    w = model.head.keypoint_weight
    # (the random model's root is kilometres away: float32 resolves 1e-7 of that)
    torch.testing.assert_close(merged.pred_joints_cam,
                               w * lifted + (1 - w) * (merged.pred_mesh_joints + merged.pred_root),
                               atol=1e-7 * float(merged.pred_root.norm()), rtol=1e-5)


def test_first_view_must_be_unrotated(mini_root):
    samples = _dataset(mini_root, angles=(90, 0))[0]['data_samples']
    tta = HandMeshTTAModel(module=_estimator())
    with pytest.raises(UserError, match=r'first view must be the unrotated crop.*rotation 90'):
        tta.merge_preds([_oracle_views(samples)])


def test_mini_config_tta_pipeline_builds(mini_root):
    """The recipe's tta_pipeline uses its own input size and starts with the unrotated view."""
    from mmengine.config import Config
    from hybridvit.registry import TRANSFORMS
    cfg = Config.fromfile(osp.join(osp.dirname(__file__), '..', '..', 'configs', 'hand',
                                   'hand-mesh_fastvit-t8_mini-freihand-128.py'))
    assert cfg.tta_model.type == 'HandMeshTTAModel'
    views = cfg.tta_pipeline[1].transforms
    assert [v.angle for v in views[0]] == list(ANGLES)
    assert views[1][0].out_size == cfg.input_size == 128
    with DefaultScope.overwrite_default_scope('hybridvit'):
        TRANSFORMS.build(cfg.tta_pipeline[1])
