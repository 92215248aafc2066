"""Run a segmentor, detector or hand-mesh model on one image and save a picture of the result.

    python demo/image_demo.py IMAGE CONFIG [CHECKPOINT] [--out-file OUT.png] [--device cpu]
           [--score-thr 0.3] [--opacity 0.5] [--bbox X1 Y1 X2 Y2]

Segmentation: colour overlay with a legend. Detection: boxes, masks, labels, scores.
Hand mesh: projected skeleton + mesh points, and the mesh itself next to OUT (``.obj`` with faces,
``.ply`` otherwise). Without CHECKPOINT the weights are random (a warning says so); nothing is
downloaded. User errors: one line on stderr, exit status 2.
"""
import argparse
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# mmengine imports the deprecated pkg_resources: keep that notice off the tool's stderr
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from hybridvit.utils.cli import UserError, run_cli  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description='hybridvit image demo')
    parser.add_argument('image', help='input image')
    parser.add_argument('config', help='config file (segmentation, detection or hand mesh)')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint (omit: random weights)')
    parser.add_argument('--out-file', default=None,
                        help='output PNG (default: <image name>_<task>.png next to the input)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--opacity', type=float, default=0.5, help='segmentation overlay opacity')
    parser.add_argument('--bbox', type=float, nargs=4, metavar=('X1', 'Y1', 'X2', 'Y2'),
                        help='hand mesh: crop of the hand in the image (default: whole image)')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.head.faces=PATH')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of user errors')
    return parser.parse_args()


def _write_png(path, img):
    import cv2
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = path + '.tmp.png'
    if not cv2.imwrite(tmp, img):
        raise UserError(f'cannot write {path}')
    os.replace(tmp, path)


def main():
    args = parse_args()
    from hybridvit.utils.image_io import read_image_bgr
    img = read_image_bgr(args.image)  # check the image (and the box) before building the model
    if args.bbox is not None:
        x1, y1, x2, y2 = args.bbox
        h, w = img.shape[:2]
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise UserError(f'{args.image}: --bbox {x1:g} {y1:g} {x2:g} {y2:g} is not inside the '
                            f'{w}x{h} image (need 0 <= x1 < x2 <= width, 0 <= y1 < y2 <= height)')
    from hybridvit.apis.inference import MIN_IMAGE_SIDE
    if min(img.shape[:2]) < MIN_IMAGE_SIDE:
        raise UserError(f'{args.image}: image is {img.shape[1]}x{img.shape[0]} pixels; the '
                        f'networks need at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (their output '
                        'stride)')

    from mmengine.config import Config
    if not osp.isfile(args.config):
        raise UserError(f'config file not found: {args.config}')
    if args.checkpoint and '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    from hybridvit.apis import inference_model, init_model, task_of
    task = task_of(cfg)
    if not args.checkpoint:
        print('warning: no checkpoint given, weights are random (predictions are meaningless)',
              file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = init_model(cfg, args.checkpoint, device=args.device)
    try:
        result = inference_model(model, img, bbox=args.bbox)
    except UserError as err:  # e.g. an image smaller than the network stride: name the file
        raise UserError(f'{args.image}: {err}') from None

    from hybridvit.visualization import draw_detections, draw_hand, draw_segmentation
    meta = model.dataset_meta or {}
    out_file = args.out_file or osp.splitext(args.image)[0] + f'_{task}.png'
    if task == 'seg':
        labels = result.pred_sem_seg.data[0].cpu().numpy()
        classes = meta.get('classes') or [str(i) for i in range(int(labels.max()) + 1)]
        vis = draw_segmentation(img, labels, classes, meta.get('palette'), args.opacity)
        summary = ', '.join(f'{classes[c]} {100 * (labels == c).mean():.1f}%'
                            for c in sorted(set(labels.flatten().tolist())) if c < len(classes))
    elif task == 'det':
        inst = result.pred_instances
        classes = meta.get('classes') or []
        masks = inst.masks.cpu().numpy() if 'masks' in inst else None
        vis = draw_detections(img, inst.bboxes.cpu().numpy(), inst.labels.cpu().numpy(),
                              inst.scores.cpu().numpy(), classes, masks, args.score_thr,
                              meta.get('palette'))
        summary = f'{int((inst.scores >= args.score_thr).sum())} detections >= {args.score_thr}'
    else:
        from hybridvit.utils.mesh_io import write_mesh
        vis = draw_hand(img, result.pred_keypoints_2d, result.get('pred_verts_2d'))
        faces = getattr(getattr(model, 'head', None), 'faces', None)
        faces = faces.cpu().numpy() if faces is not None else None
        mesh_path = write_mesh(osp.splitext(out_file)[0], result.pred_verts_cam, faces)
        summary = f'mesh written to {mesh_path}'
    _write_png(out_file, vis)
    print(f'{task} result: {summary}')
    print(f'saved {out_file}')


if __name__ == '__main__':
    run_cli(main, 'image_demo.py')
