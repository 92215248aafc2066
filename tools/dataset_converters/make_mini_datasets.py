"""Generate the bundled mini datasets (no downloads): mini ADE20K / VOC / COCO, demo image.

Examples::

    python tools/dataset_converters/make_mini_datasets.py ade --out data/    # data/mini_ade
    python tools/dataset_converters/make_mini_datasets.py all --out data/    # ade + voc + coco
    python tools/dataset_converters/make_mini_datasets.py coco --num-train 800 --image-size 384
    python tools/dataset_converters/make_mini_datasets.py demo               # demo/demo.jpg

Outputs are reproducible (same seed and arguments -> identical bytes), written atomically and
skipped when an up-to-date copy exists. See ``hybridvit/datasets/generators`` for the content.
"""
import argparse
import os.path as osp
import sys

from hybridvit.datasets.generators import (make_demo_image, make_mini_ade, make_mini_coco,
                                           make_mini_voc)
from hybridvit.utils.errors import UserError

# target -> (sub-folder of --out, generator, config hint)
_TARGETS = {
    'ade': ('mini_ade', make_mini_ade,
            "type='BaseSegDataset', reduce_zero_label=True, metainfo=SEG_METAINFO"),
    'voc': ('mini_voc', make_mini_voc,
            "data_root += '/VOCdevkit/VOC2012', type='BaseSegDataset', metainfo=SEG_METAINFO"),
    'coco': ('mini_coco', make_mini_coco, "type='CocoDataset', metainfo=COCO_METAINFO"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the bundled mini datasets (synthetic textured objects on the '
        'photographs shipped with scikit-image).')
    parser.add_argument('target', choices=['ade', 'voc', 'coco', 'all', 'demo'],
                        help="dataset to build ('all' = ade + voc + coco; 'demo' = one sample "
                        'image for demo/image_demo.py)')
    parser.add_argument('--out', default=None,
                        help="output folder (default 'data' for datasets, 'demo' for demo); "
                        'datasets go to <out>/mini_ade, <out>/mini_voc, <out>/mini_coco, the '
                        'demo image to <out>/demo.jpg')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--num-train', type=int, default=None,
                        help='training images (default: 300 ade/voc, 400 coco)')
    parser.add_argument('--num-val', type=int, default=None,
                        help='validation images (default: 60 ade/voc, 80 coco)')
    parser.add_argument('--num-aug', type=int, default=None,
                        help='voc only: extra SegmentationClassAug images (default 100)')
    parser.add_argument('--image-size', type=int, nargs='+', default=None, metavar='S',
                        help='S or H W (default: 256 ade/voc, 320 coco, 240 320 demo)')
    parser.add_argument('--log-interval', type=int, default=50,
                        help='print progress every N images (default 50)')
    parser.add_argument('--quiet', action='store_true', help='no progress output')
    return parser.parse_args(argv)


def _image_size(values):
    if values is None:
        return None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return tuple(values)
    raise UserError(f'--image-size takes 1 or 2 integers (S or H W), got {values}')


def run(args) -> None:
    size = _image_size(args.image_size)
    if args.target == 'demo':
        out = args.out or 'demo'
        path = out if out.lower().endswith(('.jpg', '.jpeg')) else osp.join(out, 'demo.jpg')
        kwargs = {} if size is None else dict(size=size if isinstance(size, tuple)
                                              else (size, size))
        print(f'wrote {make_demo_image(path, seed=args.seed, **kwargs)}')
        return
    if args.num_aug is not None and args.target not in ('voc', 'all'):
        raise UserError(f'--num-aug only applies to voc, not {args.target!r}')
    out = args.out or 'data'
    targets = ['ade', 'voc', 'coco'] if args.target == 'all' else [args.target]
    for target in targets:
        folder, generate, hint = _TARGETS[target]
        kwargs = dict(seed=args.seed, log_interval=args.log_interval, quiet=args.quiet)
        for key in ('num_train', 'num_val') + (('num_aug', ) if target == 'voc' else ()):
            if getattr(args, key) is not None:
                kwargs[key] = getattr(args, key)
        if size is not None:
            kwargs['image_size'] = size
        root = osp.join(out, folder)
        generate(root, **kwargs)
        if not args.quiet:
            print(f'[mini_{target}] data_root={root!r}; config: {hint} '
                  '(from hybridvit.datasets.generators)', flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (UserError, OSError) as exc:  # user errors: one line, exit status 2
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
