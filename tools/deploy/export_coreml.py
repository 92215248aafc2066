"""Export a FUSED backbone (or a whole seg / hand model) to CoreML (``.mlpackage``).

    python tools/deploy/export_coreml.py CONFIG CHECKPOINT OUT.mlpackage [--shape H W]
        [--part backbone|model] [--precision fp16|fp32]
    python tools/deploy/export_coreml.py --backbone fastvit-t8 none OUT.mlpackage

Needs ``coremltools`` (``pip install coremltools==9.0``; conversion works on Linux with torch
2.14). Running or timing the result needs macOS / iOS: open it in Xcode's performance report.
If coremltools is missing or fails, the tool says what failed in one line (exit 2).
"""
import argparse
import os.path as osp
import warnings

from hybridvit.utils.cli import UserError, checkpoint_or_none, run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a fused model to CoreML')
    parser.add_argument('config', help='config file, or a backbone variant with --backbone')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('out', help='output .mlpackage')
    parser.add_argument('--backbone', action='store_true',
                        help='CONFIG is a backbone variant (e.g. fastvit-t8, mobilevit-xxs)')
    parser.add_argument('--shape', type=int, nargs=2, default=[256, 256], metavar=('H', 'W'))
    parser.add_argument('--part', choices=['backbone', 'model'], default='backbone')
    parser.add_argument('--precision', choices=['fp16', 'fp32'], default='fp16')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not args.out.endswith('.mlpackage'):
        raise UserError(f'output must end with .mlpackage, got {args.out}')
    if min(args.shape) < 32:
        raise UserError(f'--shape must be at least 32 32, got {args.shape[0]} {args.shape[1]}')
    checkpoint = checkpoint_or_none(args.checkpoint)
    from hybridvit.deploy.coreml_export import CoreMLUnavailable, export_coreml
    from hybridvit.models.utils import reparameterize_model
    if checkpoint is None:
        print('WARNING: checkpoint "none": exporting RANDOM weights')
    if args.backbone:
        from hybridvit.deploy.bench_models import BACKBONES, build_torch_module
        if args.config not in BACKBONES:
            raise UserError(f'unknown backbone {args.config!r}; expected one of '
                            f'{sorted(BACKBONES)}')
        if checkpoint is not None:
            raise UserError('--backbone exports random weights only; pass a config to export '
                            'trained weights')
        module = build_torch_module(dict(source='backbone', name=args.config, fused=True))
    else:
        from hybridvit.apis import get_task, init_model
        if not osp.isfile(args.config):
            raise UserError(f'config file not found: {args.config}')
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='no checkpoint given')
            model = init_model(args.config, checkpoint)
        task = get_task(model)
        if args.part not in task.coreml_parts:
            raise UserError(f'CoreML export of {task.name} models covers --part '
                            f'{" / ".join(task.coreml_parts)} only, got --part {args.part}')
        module = task.exportable_part(reparameterize_model(model), args.part).module
    try:
        names = export_coreml(module, (1, 3, *args.shape), args.out, args.precision)
    except CoreMLUnavailable as err:
        raise UserError(str(err)) from err
    print(f'saved {args.out} ({args.precision} ML Program, input 1x3x{args.shape[0]}x'
          f'{args.shape[1]}, outputs {names}); running it needs macOS / iOS')


if __name__ == '__main__':
    run_cli(main, 'export_coreml.py')
