"""Generate the procedural mini-FreiHAND data set (FreiHAND on-disk layout).

Example:
    python tools/dataset_converters/make_mini_freihand.py data/mini_freihand \
        --num-train 256 --num-eval 64 --image-size 128
"""
import argparse

from hybridvit.datasets.generators.mini_freihand import make_mini_freihand
from hybridvit.utils.cli import run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out_dir', help='output folder (e.g. data/mini_freihand)')
    parser.add_argument('--num-train', type=int, default=256,
                        help='training samples per appearance version')
    parser.add_argument('--num-eval', type=int, default=64, help='evaluation samples')
    parser.add_argument('--num-versions', type=int, default=4,
                        help='appearance versions of the training images (1-4)')
    parser.add_argument('--image-size', type=int, default=224, help='square image side')
    parser.add_argument('--max-tilt', type=float, default=90.0,
                        help='palm or back towards the camera, tilted by at most this many '
                             'degrees (90: any rotation)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--quiet', action='store_true', help='no progress output')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    make_mini_freihand(args.out_dir, num_train=args.num_train, num_eval=args.num_eval,
                       seed=args.seed, image_size=args.image_size,
                       num_versions=args.num_versions, max_tilt=args.max_tilt,
                       verbose=not args.quiet)


if __name__ == '__main__':
    run_cli(main, 'make_mini_freihand.py')
