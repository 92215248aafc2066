"""INT8 post-training static quantisation of a fused segmentor (ONNX Runtime), with the mIoU of
fp32 vs int8 on the val split and their latency ratio.

    python tools/dataset_converters/make_mini_datasets.py ade          # data/mini_ade
    python tools/deploy/quantize_onnx.py \\
        configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py \\
        work_dirs/quickstart/iter_300.pth work_dirs/quantize --num-calib 32 --threads 2

Writes OUT_DIR/model_fp32.onnx, OUT_DIR/model_int8.onnx and OUT_DIR/quantization.json; prints a
markdown table (PyTorch fp32 / ONNX fp32 / ONNX int8 mIoU, latency at the config's input size).
"""
import argparse
import json
import os
import os.path as osp
import warnings

from hybridvit.utils.cli import UserError, checkpoint_or_none, run_cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='INT8 static quantisation of a segmentor')
    parser.add_argument('config')
    parser.add_argument('checkpoint', help="trained checkpoint, or 'none' (random weights)")
    parser.add_argument('out_dir')
    parser.add_argument('--num-calib', type=int, default=32,
                        help='training images used for calibration')
    parser.add_argument('--max-val', type=int, default=None, help='evaluate on the first N')
    parser.add_argument('--method', choices=['minmax', 'entropy', 'percentile'],
                        default='minmax', help='activation-range calibration')
    parser.add_argument('--per-tensor', action='store_true',
                        help='per-tensor weight scales (default per channel)')
    parser.add_argument('--runs', type=int, default=20, help='timed runs (latency ratio)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = checkpoint_or_none(args.checkpoint,
                                    'train the quick start first: bash tools/quickstart.sh')
    if not osp.isfile(args.config):
        raise UserError(f'config file not found: {args.config}')
    if args.num_calib < 1 or args.runs < 1 or args.threads < 1:
        raise UserError('--num-calib, --runs and --threads must be >= 1')
    import torch

    from hybridvit.apis import get_task, init_model
    from hybridvit.apis.tasks import SegTask
    from hybridvit.deploy import export_onnx, fold_output_norms, ort_session
    from hybridvit.deploy.benchmark import ORT, interleaved_latency, median_ms, ort_callable
    from hybridvit.deploy.quantization import (CalibrationReader, quantize_int8, seg_dataset,
                                               seg_miou)
    from hybridvit.models.utils import reparameterize_model
    from hybridvit.utils.atomic import atomic_open, atomic_write

    torch.set_num_threads(args.threads)
    if checkpoint is None:
        print('WARNING: checkpoint "none": RANDOM weights, the mIoU numbers are meaningless')
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='no checkpoint given')
        model = init_model(args.config, checkpoint)
    task = get_task(model)
    if not isinstance(task, SegTask):
        raise UserError(f'{args.config} is not a segmentation config (quantisation is '
                        'evaluated with mIoU)')
    data_root = model.cfg.val_dataloader.dataset.get('data_root', '')
    if data_root and not osp.isdir(data_root):
        raise UserError(f'dataset folder not found: {data_root} (generate it: python '
                        'tools/dataset_converters/make_mini_datasets.py ade)')
    size = model.cfg.model.data_preprocessor.get('size')
    if not size:
        raise UserError('the config\'s data_preprocessor has no fixed `size`: a static-shape '
                        'graph needs one (set model.data_preprocessor.size)')
    fused = reparameterize_model(model)
    fold_output_norms(fused)
    module = task.exportable_part(fused, 'model').module

    os.makedirs(args.out_dir, exist_ok=True)
    fp32 = osp.join(args.out_dir, 'model_fp32.onnx')
    int8 = osp.join(args.out_dir, 'model_int8.onnx')
    torch.manual_seed(0)
    example = torch.randn(1, 3, *size)
    check = export_onnx(module, example, fp32, names=['seg_logits'], threads=args.threads)[0]
    print(f'exported {fp32}: ONNX Runtime vs PyTorch {check}')

    calib = seg_dataset(model.cfg, 'train', args.num_calib)
    reader = CalibrationReader(model, calib)
    print(f'calibrating on {len(reader)} training images ({args.method})')
    with atomic_write(int8) as tmp:
        quantize_int8(fp32, tmp, reader, args.method, per_channel=not args.per_tensor)

    val = seg_dataset(model.cfg, 'val', args.max_val)
    results = {'pytorch_fp32': seg_miou(model, val),
               'onnx_fp32': seg_miou(fused, val, ort_session(fp32, args.threads)),
               'onnx_int8': seg_miou(fused, val, ort_session(int8, args.threads))}
    calls = {'onnx_fp32': ort_callable(fp32, args.threads),
             'onnx_int8': ort_callable(int8, args.threads)}
    times = interleaved_latency(calls, example, args.runs, warmup=3,
                                engines={k: ORT for k in calls})
    latency = {k: median_ms(v) for k, v in times.items()}
    sizes = {k: osp.getsize(p) / 2 ** 20 for k, p in (('onnx_fp32', fp32), ('onnx_int8', int8))}
    report = dict(config=args.config, checkpoint=args.checkpoint, input=list(size),
                  num_calib=len(reader), num_val=len(val), method=args.method,
                  per_channel=not args.per_tensor, threads=args.threads, metrics=results,
                  latency_ms=latency, size_mb=sizes,
                  int8_over_fp32_latency=latency['onnx_int8'] / latency['onnx_fp32'])
    with atomic_open(osp.join(args.out_dir, 'quantization.json'), 'w') as f:
        json.dump(report, f, indent=2)

    print(f'\n{len(val)} val images, input {size[0]}x{size[1]}, {args.threads} threads, '
          f'median of {args.runs} runs (each session timed in its own block, blocks in turns)\n')
    print('| model | mIoU | aAcc | latency (ms) | size (MB) |')
    print('|---|---|---|---|---|')
    for key, label in (('pytorch_fp32', 'PyTorch fp32 (unfused)'),
                       ('onnx_fp32', 'ONNX Runtime fp32 (fused)'),
                       ('onnx_int8', 'ONNX Runtime int8 (static, QDQ)')):
        m = results[key]
        lat = f'{latency[key]:.2f}' if key in latency else '-'
        mb = f'{sizes[key]:.1f}' if key in sizes else '-'
        print(f'| {label} | {m["mIoU"]:.2f} | {m["aAcc"]:.2f} | {lat} | {mb} |')
    print(f'\nint8 / fp32 latency: {report["int8_over_fp32_latency"]:.3f}x; wrote '
          f'{args.out_dir}/quantization.json')


if __name__ == '__main__':
    run_cli(main, 'quantize_onnx.py')
