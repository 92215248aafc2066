"""Export a FUSED model (or its backbone) to ONNX and check it in ONNX Runtime.

    python tools/deploy/export_onnx.py CONFIG CHECKPOINT OUT.onnx [--shape H W] [--dynamic]
        [--part backbone|model] [--opset 17] [--tol 1e-4]

CHECKPOINT may be ``none`` (random weights, for trying the export only). The model is fused
(``reparameterize_model``) and traced with the TorchScript exporter; ONNX Runtime's outputs are
compared with PyTorch's on a random input (and on a second size and batch with ``--dynamic``);
the file is written atomically, and only if the relative error is below ``--tol``.

``--part model`` exports (the task adapter's part, :mod:`hybridvit.apis.tasks`): segmentor ->
decode-head logits (1/4 of the input size, before resize and argmax); hand mesh -> the head's
tensors; detectors (Mask R-CNN, Faster R-CNN, SSD/SSDLite) -> the WHOLE detector
(:mod:`hybridvit.deploy.detector_onnx`: raw pixels in; ``dets``, ``labels`` and pasted ``masks``
out; standard ONNX ops only), checked with ONNX Runtime against ``predict()`` on
``demo/demo.jpg`` resized to the export shape (nothing written when the detections miss).
``--part neck`` keeps the detector's backbone + neck features only.
"""
import argparse
import os.path as osp
import warnings


from hybridvit.utils.cli import UserError, checkpoint_or_none, run_cli


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Export a fused model to ONNX (checked in '
                                     'ONNX Runtime)')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('out', help='output .onnx file')
    parser.add_argument('--shape', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='input size (default: the config\'s crop / input size, else '
                        'the task\'s: seg 512x512, hand 224x224, Mask R-CNN 800x1216)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width (checked at a second size)')
    parser.add_argument('--part', default='model',
                        help="'backbone', 'model' (the whole model as far as it is exportable) "
                        "or another part of the task's adapter (hybridvit.apis.tasks)")
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--tol', type=float, default=1e-4,
                        help='max relative error of ONNX Runtime vs PyTorch')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None,
                        help='override config keys, e.g. model.head.faces=None')
    parser.add_argument('--debug', action='store_true', help='show tracebacks')
    return parser.parse_args(argv)


def check_shape(shape, task=None):
    """``--shape`` checks: at least 32 (the output stride); the task's multiple (mmdet pads
    detector inputs to 32)."""
    h, w = shape
    if h < 32 or w < 32:
        raise UserError(f'--shape must be at least 32 32 (the output stride), got {h} {w}')
    if task is not None and (h % task.shape_multiple or w % task.shape_multiple):
        raise UserError(f'--shape for a {task.name} model must be multiples of '
                        f'{task.shape_multiple}, got {h} {w}')


def main(argv=None):
    args = parse_args(argv)
    if not args.out.endswith('.onnx'):
        raise UserError(f'output file must end with .onnx, got {args.out}')
    checkpoint = checkpoint_or_none(args.checkpoint)
    if not osp.isfile(args.config):
        raise UserError(f'config file not found: {args.config}')
    if args.shape is not None:
        check_shape(args.shape, None)
    import torch

    from hybridvit.apis import get_task, init_model
    from hybridvit.deploy import export_onnx, fold_output_norms, output_names, parameter_count
    from hybridvit.models.utils import reparameterize_model
    from hybridvit.utils.outputs import max_relative_error

    if checkpoint is None:
        print('WARNING: checkpoint "none": exporting RANDOM weights (for testing the export '
              'only)')
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='no checkpoint given')
        model = init_model(args.config, checkpoint,
                           cfg_options=args.cfg_options)
    task = get_task(model)
    shape = tuple(args.shape) if args.shape else task.export_input_shape(model.cfg)
    check_shape(shape, task)
    fused = reparameterize_model(model)
    if args.part != 'backbone':
        folded = fold_output_norms(fused)
        if folded:
            print(f'folded the backbone output norms of stages {folded} into the FPN lateral '
                  'convs')
    exporter = task.onnx_exporter(args.part)  # e.g. the whole detector, checked vs predict()
    if exporter is not None:
        return exporter(fused, shape, args.out, args.dynamic, args.opset)
    module, prefix, note = task.exportable_part(fused, args.part)
    reference = task.exportable_part(model, args.part).module

    torch.manual_seed(0)
    example = torch.randn(1, 3, *shape)
    with torch.no_grad():
        ref, new = reference(example), module(example)
    fuse_err = max_relative_error(ref, new)
    print(f'fused vs unfused PyTorch ({task.name} {args.part}): max relative error '
          f'{fuse_err:.2e}')
    print(f'parameters: {parameter_count(reference.module) / 1e6:.3f} M unfused -> '
          f'{parameter_count(module.module) / 1e6:.3f} M fused (whole model)')
    names = output_names(module, example, prefix)
    extra = []
    if args.dynamic:
        step = max(16, task.shape_multiple)
        extra = [torch.randn(2, 3, shape[0] + 2 * step, shape[1] + step)]
    try:
        checks = export_onnx(module, example, args.out, names=names, dynamic=args.dynamic,
                             opset=args.opset, check_inputs=extra, tol=args.tol)
    except RuntimeError as err:
        raise UserError(str(err)) from err
    for check in checks:
        print(f'ONNX Runtime vs PyTorch, {check}')
    with torch.no_grad():
        shapes = ', '.join(f'{n} {tuple(t.shape)}' for n, t in zip(names, module(example)))
    print(f'outputs: {shapes}')
    if note:
        print(f'NOT EXPORTED: {note}')
    print(f'saved {args.out} (opset {args.opset}, '
          f'{"dynamic batch/height/width" if args.dynamic else "static shape"})')


if __name__ == '__main__':
    run_cli(main, 'export_onnx.py')
