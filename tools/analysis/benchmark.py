"""CPU latency / throughput / memory / FLOPs of fused vs unfused models, vs timm, vs ResNet-50.

    # one or more backbones (hybridvit unfused / fused / fused ONNX Runtime, timm fused eager / ORT)
    python tools/analysis/benchmark.py --backbone fastvit-t8 mobilevit-xxs --threads 2
    python tools/analysis/benchmark.py --all-backbones --resolutions 256 512
    # a whole model (seg logits / hand tensors / det backbone+neck) from a config
    python tools/analysis/benchmark.py \
        --config configs/seg/fpn_fastvit-t8_8xb4-40k_ade20k-512x512.py
    # comparisons
    python tools/analysis/benchmark.py --compare-seg-r50 --compare-det-r50 --mixer-ablation
    # whole detectors: mmdet eager predict() (fused) vs the exported graph in ONNX Runtime
    python tools/analysis/benchmark.py --whole-detector \
        configs/det/ssdlite_mobilevit-xxs_8xb24-600e_coco-320.py --det-shape 320 320

A thin command line over :mod:`hybridvit.deploy.bench_suite` (groups, runner, report) and
:mod:`hybridvit.deploy.benchmark` (method: fixed thread count for PyTorch and ONNX Runtime;
modes of one engine timed alternately, order rotated, engines in separate blocks; median of
``--runs``; peak memory in fresh child processes; FLOPs by ``FlopCounterMode``). Writes
``benchmark.csv``, ``benchmark.png`` and ``benchmark.md`` to ``--out-dir`` and prints the
markdown tables.
"""
import argparse
import os.path as osp
import tempfile

from hybridvit.utils.cli import UserError, run_cli


def parse_args(argv=None):
    from hybridvit.deploy.bench_models import BACKBONES
    parser = argparse.ArgumentParser(description='CPU benchmark of fused / unfused models')
    parser.add_argument('--backbone', nargs='+', default=[], choices=sorted(BACKBONES),
                        metavar='VARIANT', help=f'backbone variants: {", ".join(BACKBONES)}')
    parser.add_argument('--all-backbones', action='store_true')
    parser.add_argument('--config', help='benchmark this whole model (see --part)')
    parser.add_argument('--checkpoint', default=None, help='weights for --config (optional)')
    parser.add_argument('--part', choices=['backbone', 'model'], default='model')
    parser.add_argument('--compare-seg-r50', action='store_true',
                        help='Semantic FPN: mmseg ResNetV1c-50 vs FastViT-T8 / SA12 at 512x512')
    parser.add_argument('--compare-det-r50', action='store_true',
                        help='Mask R-CNN predict(): R50 vs FastViT-SA12 (fused) at 800x1216')
    parser.add_argument('--mixer-ablation', action='store_true',
                        help='FastViT-S12 with RepMixer vs token_mixer=pooling')
    parser.add_argument('--resolutions', type=int, nargs='+', default=[256, 384, 512, 768, 1024])
    parser.add_argument('--runs', type=int, default=20, help='timed repetitions per mode')
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=8, help='batch for throughput (0: skip)')
    parser.add_argument('--throughput-resolutions', type=int, nargs='*', default=None,
                        help='resolutions at which to measure throughput (default: the first)')
    parser.add_argument('--no-memory', action='store_true', help='skip peak-memory children')
    parser.add_argument('--no-timm', action='store_true', help='skip the timm reference')
    parser.add_argument('--no-onnx', action='store_true', help='skip ONNX Runtime modes')
    parser.add_argument('--sgemm-size', type=int, default=2048)
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--whole-detector', nargs='+', default=[], metavar='CONFIG',
                        help='detection configs: whole-detector latency, eager predict() '
                        '(fused) vs ONNX Runtime (hybridvit.deploy.detector_onnx)')
    parser.add_argument('--det-shape', type=int, nargs=2, default=(320, 320), metavar=('H', 'W'),
                        help='--whole-detector input size (default 320 320)')
    parser.add_argument('--debug', action='store_true')
    args = parser.parse_args(argv)
    if args.all_backbones:
        args.backbone = list(BACKBONES)
    if not (args.backbone or args.config or args.compare_seg_r50 or args.compare_det_r50
            or args.mixer_ablation or args.whole_detector):
        raise UserError('nothing to benchmark: give --backbone, --all-backbones, --config, '
                        '--compare-seg-r50, --compare-det-r50, --mixer-ablation or '
                        '--whole-detector')
    for config in args.whole_detector:
        if not osp.isfile(config):
            raise UserError(f'--whole-detector config file not found: {config}')
    if min(args.det_shape) < 32 or args.det_shape[0] % 32 or args.det_shape[1] % 32:
        raise UserError(f'--det-shape must be multiples of 32, got {args.det_shape[0]} '
                        f'{args.det_shape[1]}')
    if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.batch < 0:
        raise UserError(f'--runs >= 1, --warmup >= 0, --threads >= 1, --batch >= 0 expected, '
                        f'got {args.runs}, {args.warmup}, {args.threads}, {args.batch}')
    bad = [r for r in args.resolutions if r < 32 or r % 32]
    if bad:
        raise UserError(f'--resolutions must be multiples of 32, got {bad}')
    if args.config and not osp.isfile(args.config):
        raise UserError(f'config file not found: {args.config}')
    if args.checkpoint and not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    if args.throughput_resolutions is None:
        args.throughput_resolutions = args.resolutions[:1]
    return args


def groups(args, workdir):
    """The groups the arguments ask for, in order."""
    from hybridvit.deploy import bench_suite as suite
    from hybridvit.utils.atomic import atomic_open
    onnx = not args.no_onnx
    out = [suite.backbone_group(v, args.resolutions, timm=not args.no_timm, onnx=onnx)
           for v in args.backbone]
    if args.config:
        out.append(suite.config_group(args.config, args.resolutions, args.checkpoint,
                                      args.part, onnx=onnx))
    if args.mixer_ablation:
        out.append(suite.mixer_ablation_group(args.resolutions, onnx=onnx))
    configs = {}
    for flag, name, text in ((args.compare_seg_r50, 'fpn_r50_bench.py', suite.SEG_R50),
                             (args.compare_det_r50, 'mask_rcnn_r50_bench.py', suite.DET_R50)):
        if flag:
            configs[name] = osp.join(workdir, name)
            with atomic_open(configs[name]) as f:
                f.write(text)
    if args.compare_seg_r50:
        out.append(suite.seg_r50_group(configs['fpn_r50_bench.py'], onnx=onnx))
    if args.compare_det_r50:
        out.append(suite.det_r50_group(configs['mask_rcnn_r50_bench.py']))
    return out


def main(argv=None):
    args = parse_args(argv)
    from hybridvit.deploy.bench_suite import (BenchmarkRunner, comparison_lines, markdown, plot,
                                              write_csv)
    from hybridvit.utils.atomic import atomic_open
    if args.whole_detector:
        whole_detectors(args)
        if not (args.backbone or args.config or args.compare_seg_r50 or args.compare_det_r50
                or args.mixer_ablation):
            return
    with tempfile.TemporaryDirectory(prefix='hybridvit_bench_') as workdir:
        runner = BenchmarkRunner(workdir, args.threads, args.runs, args.warmup, args.batch,
                                 args.throughput_resolutions, not args.no_memory,
                                 args.sgemm_size)
        print(f'sgemm peak with {args.threads} threads ({args.sgemm_size}^3 torch.mm): '
              f'{runner.peak:.1f} GFLOP/s')
        for group in groups(args, workdir):
            runner.run(group)
    paths = {name: osp.join(args.out_dir, f'benchmark.{name}') for name in ('csv', 'png', 'md')}
    write_csv(runner.rows, paths['csv'])
    plot(runner.rows, paths['png'])
    text = '\n'.join(markdown(runner.rows, runner.peak, args.threads)
                     + comparison_lines(runner.rows, runner.comparisons)) + '\n'
    with atomic_open(paths['md']) as f:
        f.write(text)
    print(text)
    print(f'wrote {", ".join(paths.values())}')


def whole_detectors(args):
    """``--whole-detector``: one row per config, printed and written to
    ``whole_detector.md``."""
    from hybridvit.deploy.detector_onnx import benchmark_whole_detector, whole_detector_table
    from hybridvit.utils.atomic import atomic_open
    rows = []
    with tempfile.TemporaryDirectory(prefix='hybridvit_bench_') as workdir:
        for config in args.whole_detector:
            rows.append(benchmark_whole_detector(config, tuple(args.det_shape), workdir,
                                                 None if args.config else args.checkpoint,
                                                 args.threads, args.runs,
                                                 args.warmup))
            print(f"[whole detector] {config} {rows[-1]['shape']}: eager "
                  f"{rows[-1]['eager_ms']} ms, ONNX Runtime {rows[-1]['ort_ms']} ms", flush=True)
    text = '\n'.join([f'{args.threads} threads, median of {args.runs} alternating runs, '
                      'demo/demo.jpg resized to the input size', ''] + whole_detector_table(rows))
    path = osp.join(args.out_dir, 'whole_detector.md')
    with atomic_open(path) as f:
        f.write(text + '\n')
    print(text)
    print(f'wrote {path}')


if __name__ == '__main__':
    run_cli(main, 'benchmark.py')
