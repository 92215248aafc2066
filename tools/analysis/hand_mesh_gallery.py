"""Picture of a hand-mesh model on its test split: predicted vs ground-truth skeleton per sample,
plus the Procrustes-aligned mesh (top view) and the per-sample PA-MPJPE / PA-MPVPE; also prints
the mean 2D keypoint error (pixels) over ``--num`` samples, which the 3D metrics do not show.

    python tools/analysis/hand_mesh_gallery.py CONFIG CHECKPOINT [--num 64] [--rows 5] \
        [--out gallery.png]
"""
import argparse

from hybridvit.utils.atomic import atomic_write
from hybridvit.utils.cli import UserError, checkpoint_or_none, run_cli

PANEL = 256  # pixels per panel side


def parse_args():
    parser = argparse.ArgumentParser(description='prediction gallery for hand-mesh configs')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint ('none': random weights)")
    parser.add_argument('--num', type=int, default=6, help='samples scored, from the first')
    parser.add_argument('--rows', type=int, default=5, help='samples drawn (the first ones)')
    parser.add_argument('--out', default='hand_mesh_gallery.png', help='output PNG')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.head.faces=PATH')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def _mesh_panel(pred_verts, gt_verts):
    """Top view (x, y) of the aligned prediction (red) over the ground truth (green)."""
    import cv2
    import numpy as np
    panel = np.full((PANEL, PANEL, 3), 255, np.uint8)
    both = np.concatenate([pred_verts[:, :2], gt_verts[:, :2]])
    centre, extent = both.mean(0), np.abs(both - both.mean(0)).max() + 1e-6
    for verts, colour in ((gt_verts, (60, 170, 60)), (pred_verts, (40, 40, 220))):
        pts = (verts[:, :2] - centre) / extent * (PANEL * 0.45) + PANEL / 2
        for x, y in np.round(pts).astype(int):
            cv2.circle(panel, (x, y), 1, colour, -1, cv2.LINE_AA)
    return panel


def main():
    args = parse_args()
    if args.num < 1 or args.rows < 1:
        raise UserError(f'--num and --rows must be >= 1, got {args.num} and {args.rows}')
    import cv2
    import numpy as np

    import hybridvit.datasets  # noqa: F401
    from hybridvit.apis import inference_model, init_model
    from hybridvit.evaluation.functional.hand_mesh import align_w_scale
    from hybridvit.registry import DATASETS
    from hybridvit.visualization import draw_hand, draw_text
    checkpoint = checkpoint_or_none(args.checkpoint)
    model = init_model(args.config, checkpoint, cfg_options=args.cfg_options)
    ds_cfg = dict(model.cfg.test_dataloader.dataset)
    ds_cfg['pipeline'] = []
    dataset = DATASETS.build(ds_cfg)
    rows, errors_2d = [], []
    num = min(args.num, len(dataset))
    for i in range(num):
        info = dataset.get_data_info(i)
        if 'joints_3d' not in info:
            raise UserError(f'{args.config}: the test split has no 3D labels to compare with')
        img = cv2.imread(info['img_path'])
        if img is None:
            raise UserError(f'{info["img_path"]}: cannot read the image')
        result = inference_model(model, img)
        gt_2d = info['keypoints_2d']  # (21, 2) joints projected with K by the dataset
        gt_j = info['joints_3d'] - info['joints_3d'][:1]
        gt_v = info['verts_3d'] - info['joints_3d'][:1]
        pred_j = align_w_scale(gt_j, result.pred_joints)
        pred_v = align_w_scale(gt_v, result.pred_verts)
        pa_mpjpe = 1000 * np.linalg.norm(pred_j - gt_j, axis=1).mean()
        pa_mpvpe = 1000 * np.linalg.norm(pred_v - gt_v, axis=1).mean()
        errors_2d.append(np.linalg.norm(result.pred_keypoints_2d - gt_2d, axis=1).mean())
        print(f'[gallery] {i + 1}/{num}: PA-MPJPE {pa_mpjpe:.1f} mm, PA-MPVPE {pa_mpvpe:.1f} mm, '
              f'2D keypoints {errors_2d[-1]:.1f} px', flush=True)
        if i >= args.rows:
            continue
        panels = [draw_hand(img, result.pred_keypoints_2d, min_side=PANEL),
                  draw_hand(img, gt_2d, min_side=PANEL)]
        panels = [cv2.resize(p, (PANEL, PANEL)) for p in panels]
        panels.append(_mesh_panel(pred_v, gt_v))
        for panel, text in zip(panels, (f'#{i} predicted', 'ground truth',
                                        f'PA {pa_mpjpe:.1f} / {pa_mpvpe:.1f} mm')):
            draw_text(panel, text, (6, 18), scale=0.5)
        rows.append(np.concatenate(panels, axis=1))
    print(f'mean 2D keypoint error over {num} samples: {np.mean(errors_2d):.2f} px '
          f'({img.shape[1]}x{img.shape[0]} images)')
    grid = np.concatenate(rows, axis=0)
    with atomic_write(args.out) as tmp:
        if not cv2.imwrite(tmp, grid):
            raise UserError(f'{args.out}: cannot write the picture')
    print(f'saved {args.out} (columns: predicted skeleton, ground truth, aligned mesh top view: '
          'prediction red, ground truth green)')


if __name__ == '__main__':
    run_cli(main, 'hand_mesh_gallery.py')
