"""Run a segmentor, detector or hand-mesh model on images and save a picture of each result.

    python demo/image_demo.py IMAGE CONFIG [CHECKPOINT] [--out-file OUT.png] [--device cpu]
           [--score-thr 0.3] [--opacity 0.5] [--bbox X1 Y1 X2 Y2]
    python demo/image_demo.py FOLDER_OR_GLOB CONFIG [CHECKPOINT] [--out-dir outputs]

IMAGE is one file, a folder (its images, sorted) or a quoted glob (``'data/*.jpg'``), as in
mmdet's demo. One picture per image: ``--out-file`` for a single file (default
``<image name>_<task>.png`` next to it), else ``--out-dir/<image name>_<task>.png``. A file that
cannot be read is reported by name and skipped; the others are still written, and the exit
status is 2 at the end.

Segmentation: colour overlay with a legend. Detection: boxes, masks, labels, scores.
Hand mesh: projected skeleton + mesh points, and the mesh itself next to the picture (``.obj``
with faces, ``.ply`` otherwise). The drawing is the task adapter's (``hybridvit.apis.tasks``),
the same as ``tools/test.py --show-dir``. Without CHECKPOINT the weights are random (a warning
says so); nothing is downloaded. User errors: one line on stderr, exit status 2.

Detection: CHECKPOINT may be a whole-detector ``.onnx`` from ``tools/deploy/export_onnx.py``;
ONNX Runtime then runs it instead of PyTorch (``hybridvit.apis.init_model`` picks the backend)
and the picture is drawn the same way.
"""
import argparse
import glob
import os
import os.path as osp
import sys
import warnings

# mmengine imports the deprecated pkg_resources: keep that notice off the tool's stderr
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from hybridvit.utils.cli import UserError, run_cli  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='hybridvit image demo')
    parser.add_argument('image', help='input image, folder of images, or a quoted glob')
    parser.add_argument('config', help='config file (segmentation, detection or hand mesh)')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint (omit: random weights)')
    parser.add_argument('--out-file', default=None,
                        help='single image: output PNG (default: <image name>_<task>.png next '
                        'to the input)')
    parser.add_argument('--out-dir', default='outputs',
                        help='folder / glob input: where the pictures go')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--opacity', type=float, default=0.5, help='segmentation overlay opacity')
    parser.add_argument('--bbox', type=float, nargs=4, metavar=('X1', 'Y1', 'X2', 'Y2'),
                        help='hand mesh: crop of the hand in the image (default: whole image)')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.head.faces=PATH')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of user errors')
    return parser.parse_args(argv)


def list_images(spec: str):
    """``(paths, single)``: the file, the images of a folder (sorted) or the glob's matches.

    Raises:
        UserError: nothing matches.
    """
    if osp.isfile(spec):
        return [spec], True
    if osp.isdir(spec):
        paths = sorted(osp.join(spec, n) for n in os.listdir(spec)
                       if n.lower().endswith(IMAGE_EXTENSIONS))
        if not paths:
            raise UserError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) in folder {spec}')
        return paths, False
    if glob.has_magic(spec):
        paths = sorted(p for p in glob.glob(spec, recursive=True) if osp.isfile(p))
        if not paths:
            raise UserError(f'no files match {spec}')
        return paths, False
    raise UserError(f'image not found: {spec}')


def load_image(path: str, bbox=None):
    """Read ``path`` and check it (and ``bbox``) before any model runs on it."""
    from hybridvit.apis.inference import MIN_IMAGE_SIDE
    from hybridvit.utils.image_io import read_image_bgr
    img = read_image_bgr(path)
    h, w = img.shape[:2]
    if bbox is not None:
        x1, y1, x2, y2 = bbox
        if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
            raise UserError(f'{path}: --bbox {x1:g} {y1:g} {x2:g} {y2:g} is not inside the '
                            f'{w}x{h} image (need 0 <= x1 < x2 <= width, 0 <= y1 < y2 <= height)')
    if min(h, w) < MIN_IMAGE_SIDE:
        raise UserError(f'{path}: image is {w}x{h} pixels; the networks need at least '
                        f'{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} (their output stride)')
    return img


def run_one(model, task, path, img, out_file, args):
    """Infer, draw and write one picture (+ the task's extra files); returns a summary line."""
    import cv2

    from hybridvit.apis import inference_model
    from hybridvit.utils.atomic import atomic_write
    try:
        result = inference_model(model, img, bbox=args.bbox)
    except UserError as err:  # e.g. an image smaller than the network stride: name the file
        raise UserError(f'{path}: {err}') from None
    vis, summary = task.draw(img, result, model.dataset_meta or {}, score_thr=args.score_thr,
                             opacity=args.opacity)
    extras = task.save_extras(model, result, osp.splitext(out_file)[0])
    with atomic_write(out_file) as tmp:
        if not cv2.imwrite(tmp, vis):
            raise UserError(f'cannot write {out_file}')
    return summary + ''.join(f'; wrote {p}' for p in extras)


def main(argv=None):
    args = parse_args(argv)
    paths, single = list_images(args.image)
    first = load_image(paths[0], args.bbox) if single else None  # fail before building
    from mmengine.config import Config
    if not osp.isfile(args.config):
        raise UserError(f'config file not found: {args.config}')
    if args.checkpoint and '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    from hybridvit.apis import get_task, init_model
    task = get_task(cfg)
    if not args.checkpoint:
        print('warning: no checkpoint given, weights are random (predictions are meaningless)',
              file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        model = init_model(cfg, args.checkpoint, device=args.device)

    if single:
        out_file = args.out_file or osp.splitext(paths[0])[0] + f'_{task.name}.png'
        summary = run_one(model, task, paths[0], first, out_file, args)
        print(f'{task.name} result: {summary}')
        print(f'saved {out_file}')
        return

    from mmengine.utils import ProgressBar
    failed = []
    progress = ProgressBar(len(paths), file=sys.stdout)
    for path in paths:
        out_file = osp.join(args.out_dir,
                            osp.splitext(osp.basename(path))[0] + f'_{task.name}.png')
        try:
            run_one(model, task, path, load_image(path, args.bbox), out_file, args)
        except UserError as err:
            failed.append(path)
            print(f'\nimage_demo.py: skipped {path}: {err}', file=sys.stderr)
        progress.update()
    print(f'\nsaved {len(paths) - len(failed)} {task.name} pictures to {args.out_dir}')
    if failed:
        raise UserError(f'{len(failed)} of {len(paths)} images failed (named above): '
                        f'{", ".join(failed)}')


if __name__ == '__main__':
    run_cli(main, 'image_demo.py')
