"""Convert an official apple/ml-fastvit or timm FastViT checkpoint to hybridvit's key layout.

Usage::

    python tools/model_converters/fastvit_to_hybridvit.py SRC DST [--arch sa12] [--fuse]

SRC: ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.safetensors`` (official, timm or hybridvit
layout, unfused or fused; the layout is detected from the keys). DST: ``.pth`` (saved as
``{'state_dict': ...}``) or ``.safetensors``. Classifier keys (``head``, ``dist_head``,
``conv_exp``) are dropped and counted. ``--arch`` checks that the result loads strictly
into ``FastViT(arch)`` (``deploy=True`` for fused checkpoints); ``--fuse`` (needs
``--arch``) writes reparameterised weights for ``FastViT(arch, deploy=True)``. The output
is written to a temporary file and renamed, so an interrupted run never leaves a truncated
DST. A wrong input (missing file, unknown layout, checkpoint that does not fit ``--arch``) is
one line on stderr, exit status 2.
"""
import argparse
import os
import sys

ARCHS = ['t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36']


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='official / timm / hybridvit FastViT checkpoint')
    parser.add_argument('dst', help='output file (.pth or .safetensors)')
    parser.add_argument('--arch', choices=ARCHS,
                        help='verify that the result loads strictly into FastViT(arch)')
    parser.add_argument('--fuse', action='store_true',
                        help='reparameterise (needs --arch): weights for deploy=True')
    return parser.parse_args(argv)



def convert(src: str, dst: str, arch=None, fuse: bool = False) -> str:
    """Convert ``src`` into ``dst``; return a one-line summary."""
    from hybridvit.models.utils.checkpoint import (read_state_dict,
                                                   save_checkpoint_atomically)
    from hybridvit.models.utils.fastvit_converters import (convert_fastvit_state_dict,
                                                           detect_fastvit_format,
                                                           is_reparameterized_state_dict)
    from hybridvit.utils.errors import UserError

    if fuse and arch is None:
        raise UserError('--fuse needs --arch (the model is built to fuse the weights)')
    if not os.path.isfile(src):
        raise FileNotFoundError(f'no such checkpoint: {src}')
    state_dict = read_state_dict(src)
    fmt = detect_fastvit_format(state_dict)
    fused = bool(is_reparameterized_state_dict(state_dict))
    converted, dropped = convert_fastvit_state_dict(state_dict, deploy=fused)
    if arch is not None:
        from hybridvit.models.backbones.fastvit import FastViT
        from hybridvit.models.utils.checkpoint import load_state_dict_strictly
        from hybridvit.models.utils.reparameterize import reparameterize_model
        model = FastViT(arch, deploy=fused)
        load_state_dict_strictly(model, converted, source=src,
                                 allowed_missing=[r'^norm\d+\.'], logger='silent')
        if fuse and not fused:
            own = set(converted)
            fused_sd = reparameterize_model(model.eval(), inplace=True).state_dict()
            converted = {k: v for k, v in fused_sd.items()
                         if k in own or not k.startswith('norm')}
            fused = True
    save_checkpoint_atomically(converted, dst)
    return (f'{src} ({fmt} layout{", fused" if fused else ""}) -> {dst}: '
            f'{len(converted)} tensors; dropped {len(dropped)} classifier key(s)'
            f'{f", verified against FastViT({arch!r})" if arch else ""}')


def main(argv=None) -> int:
    args = parse_args(argv)
    from hybridvit.utils.cli import user_error_message
    try:
        print(convert(args.src, args.dst, arch=args.arch, fuse=args.fuse))
    except Exception as err:  # noqa: BLE001 - a user mistake is one line, a bug a traceback
        message = user_error_message(err)
        if message is None:
            raise
        print(f'error: {type(err).__name__}: {message}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
