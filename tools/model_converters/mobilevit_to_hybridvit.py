"""Convert a timm or ml-cvnets MobileViT v1 checkpoint to hybridvit's key layout.

Usage::

    python tools/model_converters/mobilevit_to_hybridvit.py SRC DST [--arch xxs] [--fuse]

SRC: ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.safetensors`` (timm, cvnets or hybridvit layout;
the layout is detected from the keys). DST: ``.pth`` (saved as ``{'state_dict': ...}``) or
``.safetensors``. Classifier keys are dropped and listed. ``--arch`` checks that the result
loads strictly into ``MobileViT(arch)``; ``--fuse`` folds BN into the convs (for
``MobileViT(deploy=True)``). The output is written to a temporary file and renamed, so an
interrupted run never leaves a truncated DST. A wrong input (missing file, unknown layout,
checkpoint that does not fit ``--arch``) is one line on stderr, exit status 2.
"""
import argparse
import os
import sys


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='timm / cvnets / hybridvit MobileViT v1 checkpoint')
    parser.add_argument('dst', help='output file (.pth or .safetensors)')
    parser.add_argument('--arch', choices=['xxs', 'xs', 's'],
                        help='verify that the result loads strictly into MobileViT(arch)')
    parser.add_argument('--fuse', action='store_true',
                        help='fold BatchNorm into the convs (deploy weights)')
    return parser.parse_args(argv)



def convert(src: str, dst: str, arch=None, fuse: bool = False) -> str:
    """Convert ``src`` into ``dst``; return a one-line summary."""
    from hybridvit.models.utils.checkpoint import (read_state_dict,
                                                   save_checkpoint_atomically)
    from hybridvit.models.layers.conv_bn import fuse_bn_state_dict
    from hybridvit.models.utils.mobilevit_converters import (
        convert_mobilevit_state_dict, detect_mobilevit_format)

    if not os.path.isfile(src):
        raise FileNotFoundError(f'no such checkpoint: {src}')
    state_dict = read_state_dict(src)
    fmt = detect_mobilevit_format(state_dict)
    converted, dropped = convert_mobilevit_state_dict(state_dict)
    if fuse:
        converted = fuse_bn_state_dict(converted)
    if arch is not None:
        from hybridvit.models.backbones.mobilevit import MobileViT
        from hybridvit.models.utils.checkpoint import load_state_dict_strictly
        load_state_dict_strictly(MobileViT(arch, deploy=fuse), converted, source=src,
                                 logger='silent')
    save_checkpoint_atomically(converted, dst)
    return (f'{src} ({fmt} layout) -> {dst}: {len(converted)} tensors'
            f'{", fused" if fuse else ""}; dropped {len(dropped)} classifier key(s)'
            f'{f", verified against MobileViT({arch!r})" if arch else ""}')


def main(argv=None) -> int:
    args = parse_args(argv)
    from hybridvit.utils.cli import user_error_message
    try:
        print(convert(args.src, args.dst, arch=args.arch, fuse=args.fuse))
    except Exception as err:  # noqa: BLE001 - a user mistake is one line, a bug a traceback
        message = user_error_message(err)
        if message is None:
            raise
        print(f'error: {message}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
