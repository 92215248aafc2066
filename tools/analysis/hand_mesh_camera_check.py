"""Where does a hand-mesh model's camera-frame error come from? For the config's test split, prints
the mean 2D error of the projected skeleton and (``keypoint_branch`` heads) of the soft-argmax
keypoints (pixels of the input crop), the root-relative MPJPE, and, as median [p10, p90] over the
samples, the ratios predicted / true of: the weak-perspective scale (least-squares fit of the
joints onto their 2D positions: the 2D placement), the scale the recovered depth is read from
(``depth ~ 1 / scale``; only for heads that do not lift a ``keypoint_branch``'s keypoints, which
read the depth from the lifted bone lengths instead), the spread of the 2D skeleton, the reference bone 9-10, the hand
size, the angle between the rotations that align the regressed joints and the regressed mesh with
their labels (0 when the mesh is registered to its own skeleton, which places it) and, where the
samples carry ``K`` and the camera-frame root, the recovered root depth (what a submission holds)
with its mean absolute error, and the submission's mean joint error three ways: aligned (PA-MPJPE,
similarity alignment), in the camera frame (the unaligned MPJPE the server scores) and in the camera
frame with the true root depth put in (what a perfect depth read-out would score: the rest of the
unaligned error is the placement and the pose). For heads that lift their keypoints it also reads
the depth the same way from the *true* 2.5D keypoints with random 2D errors of the model's own
mean size added (20 seeded draws): how precise the depth can be at that 2D accuracy.

    python tools/analysis/hand_mesh_camera_check.py CONFIG CHECKPOINT [--num 64] \
        [--cfg-options test_dataloader.dataset.data_root=DATA]
"""
import argparse
import json

from hybridvit.utils.cli import UserError, checkpoint_or_none, run_cli


def parse_args():
    parser = argparse.ArgumentParser(description="diagnose a hand-mesh model's camera")
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint ('none': random weights)")
    parser.add_argument('--num', type=int, default=0, help='test samples (default: all)')
    parser.add_argument('--batch', type=int, default=16)
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def _spread(points):
    """(B, J, 2) -> (B,) mean distance of the points from their centroid."""
    return (points - points.mean(1, keepdim=True)).norm(dim=-1).mean(1)


def _summary(values):
    import numpy as np
    p10, p50, p90 = np.percentile(np.asarray(values), [10, 50, 90])
    return f'{p50:.3f} [{p10:.3f}, {p90:.3f}]'


def _depth_error_at_noise(batches, sigma, draws=20):
    """Mean |log(depth / true depth)| of the bone-length depth read from the true 2.5D keypoints
    (and the true bone lengths) with iid Gaussian 2D errors of mean length ``sigma`` pixels
    (seeded): the depth's precision at that 2D accuracy."""
    import torch
    from hybridvit.models.heads.hand_camera import (bone_lengths, depth_from_bones,
                                                    lift_keypoints)
    gen = torch.Generator().manual_seed(0)
    errors = []
    for uv, joints, depth, K in batches:  # (B, J, 2) px, (B, J, 3) root-relative, (B,), (B, 3, 3)
        focal = 0.5 * (K[:, 0, 0] + K[:, 1, 1])
        rel_depth = focal[:, None] * joints[..., 2] / depth[:, None]  # (B, J) pixels
        for _ in range(draws):
            noise = torch.randn(uv.shape, generator=gen)
            noise *= sigma / noise.norm(dim=-1).mean()
            points = lift_keypoints(uv + noise, rel_depth, K)
            errors.append((depth_from_bones(points, bone_lengths(joints)) / depth).log().abs())
    return float(torch.cat(errors).mean())


def main():
    args = parse_args()
    if args.num < 0 or args.batch < 1:
        raise UserError(f'--num must be >= 0 and --batch >= 1, got {args.num}, {args.batch}')
    import numpy as np
    import torch
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope

    import hybridvit.datasets  # noqa: F401
    from hybridvit.apis import init_model
    from hybridvit.evaluation.functional import align_w_scale
    from hybridvit.models.heads.hand_camera import REF_BONE, fit_weak_perspective
    from hybridvit.models.heads.procrustes import procrustes_rotation
    from hybridvit.registry import DATASETS
    checkpoint = checkpoint_or_none(args.checkpoint)
    model = init_model(args.config, checkpoint, cfg_options=args.cfg_options)
    with DefaultScope.overwrite_default_scope('hybridvit'):
        dataset = DATASETS.build(model.cfg.test_dataloader.dataset)
    num = len(dataset) if args.num == 0 else min(args.num, len(dataset))
    stats = {k: [] for k in ('err_2d', 'err_2d_keypoints', 'rr_mpjpe', 'scale', 'depth_scale',
                             'spread', 'bone', 'size', 'root_depth', 'root_depth_err',
                             'mesh_angle', 'pa_mpjpe', 'cam_mpjpe', 'cam_mpjpe_true_depth')}
    noisy_depth_inputs = []
    for start in range(0, num, args.batch):
        batch = pseudo_collate([dataset[i] for i in range(start, min(start + args.batch, num))])
        data = model.data_preprocessor(batch, False)
        samples = data['data_samples']
        if any('gt_joints' not in s for s in samples):
            raise UserError(f'{args.config}: the test split has no 3D labels to compare with')
        with torch.no_grad():
            out = model(data['inputs'], mode='tensor')
        size = torch.tensor([[s.img_shape[1], s.img_shape[0]] for s in samples],
                            dtype=torch.float32)[:, None]  # (B, 1, 2) = (w, h)
        gt_2d = torch.stack([s.gt_keypoints_2d for s in samples]).float()  # (B, J, 2) px
        gt_j = torch.stack([s.gt_joints for s in samples]).float()  # (B, J, 3) root-relative
        gt_norm = gt_2d / size * 2 - 1

        def px(norm):
            return (norm + 1) / 2 * size

        stats['err_2d'] += (px(out['keypoints_2d_norm']) - gt_2d).norm(dim=-1).mean(1).tolist()
        if 'keypoints_uv' in out:
            stats['err_2d_keypoints'] += (px(out['keypoints_uv']) - gt_2d).norm(dim=-1).mean(
                1).tolist()
        stats['rr_mpjpe'] += ((out['joints'] - gt_j).norm(dim=-1).mean(1) * 1000).tolist()
        true_scale, _ = fit_weak_perspective(gt_j[..., :2], gt_norm)
        stats['scale'] += (out['cam'][:, 0] / true_scale).tolist()
        camera = model.head.camera_frame(out, samples)  # what HandMeshHead.predict writes
        if camera is not None:
            if 'cam' in camera:  # the weak-perspective read-out (heads without keypoints)
                stats['depth_scale'] += (camera['cam'][:, 0] / true_scale).tolist()
            if all('gt_root' in s for s in samples):
                depth = camera['root'][:, 2]
                true_depth = torch.stack([s.gt_root[2] for s in samples]).float()
                stats['root_depth'] += (depth / true_depth).tolist()
                if model.head.lifts_keypoints:
                    noisy_depth_inputs.append(
                        (gt_2d, gt_j, true_depth, torch.stack([s.K for s in samples]).float()))
                stats['root_depth_err'] += ((depth - true_depth).abs() * 1000).tolist()
                gt_cam = gt_j + torch.stack([s.gt_root for s in samples]).float()[:, None]
                oracle = model.head.camera_frame(dict(out, root_depth=true_depth), samples)
                for key, joints in (('cam_mpjpe', camera['joints']),
                                    ('cam_mpjpe_true_depth', oracle['joints'])):
                    stats[key] += ((joints - gt_cam).norm(dim=-1).mean(1) * 1000).tolist()
                for pred_j, gt in zip(camera['joints'].double().numpy(), gt_cam.double().numpy()):
                    aligned = align_w_scale(gt, pred_j)  # (J, 3) as HandMeshMetric aligns
                    stats['pa_mpjpe'].append(float(np.linalg.norm(aligned - gt, axis=-1).mean())
                                             * 1000)
        stats['spread'] += (_spread(out['keypoints_2d_norm']) / _spread(gt_norm)).tolist()
        bone = (out['joints'][:, REF_BONE[1]] - out['joints'][:, REF_BONE[0]]).norm(dim=-1)
        gt_bone = (gt_j[:, REF_BONE[1]] - gt_j[:, REF_BONE[0]]).norm(dim=-1)
        stats['bone'] += (bone / gt_bone).tolist()
        stats['size'] += (out['joints'].norm(dim=-1).mean(1) / gt_j.norm(dim=-1).mean(1)).tolist()
        if all('gt_verts' in s for s in samples):
            gt_v = torch.stack([s.gt_verts for s in samples]).float()
            turn = (procrustes_rotation(out['verts'], gt_v).transpose(1, 2)
                    @ procrustes_rotation(out['joints'], gt_j))  # (B, 3, 3)
            cos = (turn.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
            stats['mesh_angle'] += torch.rad2deg(torch.acos(cos.clamp(-1, 1))).tolist()
    report = {'samples': num,
              '2D px (projected skeleton)': round(sum(stats['err_2d']) / num, 2),
              'root-relative MPJPE mm': round(sum(stats['rr_mpjpe']) / num, 1),
              'scale pred/true': _summary(stats['scale']),
              '2D spread pred/true': _summary(stats['spread']),
              'bone 9-10 pred/true': _summary(stats['bone']),
              'hand size pred/true': _summary(stats['size'])}
    if stats['mesh_angle']:
        report['mesh vs skeleton alignment, deg'] = _summary(stats['mesh_angle'])
    if stats['depth_scale']:
        report['depth scale pred/true'] = _summary(stats['depth_scale'])
    if stats['root_depth']:
        report['root depth pred/true'] = _summary(stats['root_depth'])
        report['root depth error mm'] = round(sum(stats['root_depth_err']) /
                                              len(stats['root_depth_err']), 1)
        report['root depth mean |log(pred/true)|'] = round(
            float(torch.tensor(stats['root_depth']).log().abs().mean()), 3)
        for key, name in (('pa_mpjpe', 'PA-MPJPE mm'), ('cam_mpjpe', 'camera-frame MPJPE mm'),
                          ('cam_mpjpe_true_depth', 'camera-frame MPJPE at the true root depth mm')):
            report[name] = round(sum(stats[key]) / len(stats[key]), 1)
    if stats['err_2d_keypoints']:
        report['2D px (soft-argmax keypoints)'] = round(sum(stats['err_2d_keypoints']) / num, 2)
    if noisy_depth_inputs and stats['err_2d_keypoints']:
        sigma = sum(stats['err_2d_keypoints']) / num
        report['root depth mean |log|, true keypoints + noise of that 2D error'] = round(
            _depth_error_at_noise(noisy_depth_inputs, sigma), 3)
    print(json.dumps(report, indent=1))


if __name__ == '__main__':
    run_cli(main, 'hand_mesh_camera_check.py')
