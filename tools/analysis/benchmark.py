"""CPU latency / throughput / memory / FLOPs of fused vs unfused models, vs timm, vs ResNet-50.

    # one or more backbones (hybridvit unfused / fused / fused ONNX Runtime, timm fused eager / ORT)
    python tools/analysis/benchmark.py --backbone fastvit-t8 mobilevit-xxs --threads 2
    python tools/analysis/benchmark.py --all-backbones --resolutions 256 512
    # a whole model (seg logits / hand tensors / det backbone+neck) from a config
    python tools/analysis/benchmark.py \
        --config configs/seg/fpn_fastvit-t8_8xb4-40k_ade20k-512x512.py
    # comparisons
    python tools/analysis/benchmark.py --compare-seg-r50 --compare-det-r50 --mixer-ablation

Method (see ``hybridvit/deploy/benchmark.py``): fixed thread count for PyTorch and ONNX Runtime;
modes measured alternately within each repetition (order rotated), median of ``--runs``; ONNX
graphs exported per resolution (static H/W, dynamic batch) and checked against PyTorch; peak
memory = peak RSS increase during inference in a fresh child process; FLOPs by
``FlopCounterMode`` (MACs = FLOPs / 2); "% of sgemm peak" = model GFLOP/s / this machine's
``torch.mm`` GFLOP/s with the same threads. Writes ``benchmark.csv``, ``benchmark.png`` and
``benchmark.md`` to ``--out-dir`` and prints the markdown tables.
"""
import argparse
import csv
import os
import os.path as osp
import platform
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from hybridvit.utils.cli import UserError, run_cli  # noqa: E402

BUILDER = 'hybridvit.deploy.bench_models:build_callable'
COLUMNS = ['group', 'model', 'mode', 'resolution', 'latency_ms', 'latency_ms_min', 'runs',
           'throughput_img_s', 'throughput_batch', 'peak_rss_mb', 'params_m', 'gmacs',
           'gmacs_256', 'gflops_per_s', 'pct_sgemm_peak', 'threads']
PAPER_MIXER = {384: 25.1, 1024: 43.9}  # % lower latency of RepMixer vs Pooling, iPhone 12 Pro
# mmseg 1.2.2 ships no fpn_r50 80k file; the 160k one builds the identical model
SEG_R50 = """_base_ = 'mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py'
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(pretrained=None, backbone=dict(init_cfg=None, norm_cfg=norm_cfg),
             decode_head=dict(norm_cfg=norm_cfg))
"""
DET_R50 = """_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
model = dict(backbone=dict(init_cfg=None))
"""
SEG_CONFIGS = {'FPN-T8': 'configs/seg/fpn_fastvit-t8_8xb4-40k_ade20k-512x512.py',
               'FPN-SA12': 'configs/seg/fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py'}
DET_CONFIG = 'configs/det/mask-rcnn_fastvit-sa12_fpn_1x_coco.py'
# identical post-processing for both detectors, and every one of the 100 boxes reaches the
# mask head (random weights would otherwise give ~0 boxes above the default 0.05 threshold)
DET_TEST_CFG = {'model.test_cfg.rcnn.score_thr': 0.0}


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
    parser.add_argument('--debug', action='store_true')
    args = parser.parse_args(argv)
    if args.all_backbones:
        args.backbone = list(BACKBONES)
    if not (args.backbone or args.config or args.compare_seg_r50 or args.compare_det_r50
            or args.mixer_ablation):
        raise UserError('nothing to benchmark: give --backbone, --all-backbones, --config, '
                        '--compare-seg-r50, --compare-det-r50 or --mixer-ablation')
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


class Bench:
    """Runs groups of modes and collects CSV rows."""

    def __init__(self, args, workdir):
        import torch

        from hybridvit.deploy.benchmark import sgemm_gflops
        self.args = args
        self.workdir = workdir
        self.rows = []
        self.notes = []
        torch.set_num_threads(args.threads)
        self.peak = sgemm_gflops(args.threads, n=args.sgemm_size)
        print(f'sgemm peak with {args.threads} threads ({args.sgemm_size}^3 torch.mm): '
              f'{self.peak:.1f} GFLOP/s')
        self._modules = {}

    # -------------------------------------------------------------------- helpers
    def module(self, spec):
        from hybridvit.deploy.bench_models import build_torch_module
        key = repr(sorted((k, v) for k, v in spec.items() if k not in ('engine', 'onnx')))
        if key not in self._modules:
            self._modules[key] = build_torch_module(spec)
        return self._modules[key]

    def export(self, spec, res):
        import torch

        from hybridvit.deploy import export_onnx
        torch_spec = {k: v for k, v in spec.items() if k not in ('engine', 'onnx')}
        module = self.module(torch_spec)
        path = osp.join(self.workdir, f'{abs(hash(repr(sorted(torch_spec.items()))))}_{res}'
                        '.onnx')
        if not osp.exists(path):
            torch.manual_seed(0)
            export_onnx(module, torch.randn(1, 3, res, res), path, dynamic='batch',
                        threads=self.args.threads)
        spec.setdefault('onnx', {})[res] = path
        return path

    def callable(self, spec, res):
        from hybridvit.deploy.benchmark import ort_callable, torch_callable
        if spec.get('engine') == 'ort':
            return ort_callable(self.export(spec, res), self.args.threads)
        return torch_callable(self.module(spec))

    def flops(self, spec, res):
        import torch

        from hybridvit.deploy.benchmark import count_flops
        torch_spec = {k: v for k, v in spec.items() if k not in ('engine', 'onnx')}
        return count_flops(self.module(torch_spec), torch.randn(1, 3, res, res))

    # -------------------------------------------------------------------- one group
    def run_group(self, group, modes, resolutions, throughput=True):
        """``modes``: ``{(model label, mode label): spec}``, timed alternately per resolution."""
        import torch

        from hybridvit.deploy import parameter_count
        from hybridvit.deploy.benchmark import interleaved_latency, median_ms, \
            peak_rss_increase_mb
        args = self.args
        params = {}
        macs256 = {}
        for key, spec in modes.items():
            torch_spec = {k: v for k, v in spec.items() if k not in ('engine', 'onnx')}
            params[key] = parameter_count(self.module(torch_spec)) / 1e6
            macs256[key] = self.flops(spec, 256) / 2e9
        for res in resolutions:
            t0 = time.time()
            calls = {key: self.callable(spec, res) for key, spec in modes.items()}
            x = torch.randn(1, 3, res, res)
            lat = interleaved_latency(calls, x, args.runs, args.warmup)
            thr = {}
            if throughput and args.batch and res in args.throughput_resolutions:
                xb = torch.randn(args.batch, 3, res, res)
                times = interleaved_latency(calls, xb, max(3, args.runs // 4), 1)
                thr = {k: args.batch / (median_ms(v) / 1e3) for k, v in times.items()}
            for key, spec in modes.items():
                flops = self.flops(spec, res) if res != 256 else macs256[key] * 2e9
                ms = median_ms(lat[key])
                self.rows.append(dict(
                    group=group, model=key[0], mode=key[1], resolution=res,
                    latency_ms=round(ms, 3), latency_ms_min=round(1e3 * min(lat[key]), 3),
                    runs=args.runs, throughput_img_s=round(thr[key], 2) if key in thr else '',
                    throughput_batch=args.batch if key in thr else '', peak_rss_mb='',
                    params_m=round(params[key], 3), gmacs=round(flops / 2e9, 3),
                    gmacs_256=round(macs256[key], 3),
                    gflops_per_s=round(flops / 1e9 / (ms / 1e3), 2),
                    pct_sgemm_peak=round(100 * flops / 1e9 / (ms / 1e3) / self.peak, 1),
                    threads=args.threads))
            del calls
            print(f'[{group}] {res}x{res}: ' + ', '.join(
                f'{k[0]} {k[1]} {median_ms(v):.1f} ms' for k, v in lat.items())
                + f'  ({time.time() - t0:.0f} s)', flush=True)
        if not args.no_memory:
            for key, spec in modes.items():
                if spec.get('engine') == 'ort':
                    for res in resolutions:
                        self.export(spec, res)
                mem = peak_rss_increase_mb(BUILDER, spec, resolutions, args.threads)
                for row in self.rows:
                    if (row['group'], row['model'], row['mode']) == (group, *key):
                        row['peak_rss_mb'] = round(mem[row['resolution']], 1)

    def run_det_predict(self, group, modes, shape):
        """Full ``model.test_step`` latency of detectors (eager), alternately."""
        import torch

        from hybridvit.deploy import parameter_count
        from hybridvit.deploy.bench_models import build_callable
        from hybridvit.deploy.benchmark import interleaved_latency, median_ms, \
            peak_rss_increase_mb
        args = self.args
        calls = {key: build_callable(spec, 0, args.threads) for key, spec in modes.items()}
        lat = interleaved_latency(calls, torch.empty(0), max(3, args.runs // 2), 1)
        for key, spec in modes.items():
            mem = ('' if args.no_memory else
                   round(peak_rss_increase_mb(BUILDER, spec, [0], args.threads)[0], 1))
            flops = self._det_flops(calls[key])
            ms = median_ms(lat[key])
            self.rows.append(dict(
                group=group, model=key[0], mode=key[1], resolution=f'{shape[0]}x{shape[1]}',
                latency_ms=round(ms, 1), latency_ms_min=round(1e3 * min(lat[key]), 1),
                runs=len(lat[key]), throughput_img_s='', throughput_batch='', peak_rss_mb=mem,
                params_m=round(parameter_count(calls[key].model) / 1e6, 3),
                gmacs=round(flops / 2e9, 2), gmacs_256='',
                gflops_per_s=round(flops / 1e9 / (ms / 1e3), 2),
                pct_sgemm_peak=round(100 * flops / 1e9 / (ms / 1e3) / self.peak, 1),
                threads=args.threads))
        print(f'[{group}] ' + ', '.join(f'{k[0]} {median_ms(v):.0f} ms' for k, v in lat.items()))

    @staticmethod
    def _det_flops(call):
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from hybridvit.deploy.benchmark import _sdpa_cpu_flops
        custom = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops}
        counter = FlopCounterMode(display=False, custom_mapping=custom)
        with counter:
            call()
        return counter.get_total_flops()


# ------------------------------------------------------------------------ groups
def backbone_modes(variant, args, kwargs=None, label=None, timm=True):
    from hybridvit.deploy.bench_models import timm_name
    label = label or variant
    base = dict(source='backbone', name=variant, kwargs=kwargs or {})
    modes = {(label, 'unfused'): dict(base, fused=False),
             (label, 'fused'): dict(base, fused=True)}
    if not args.no_onnx:
        modes[(label, 'fused-ort')] = dict(base, fused=True, engine='ort')
    if timm and not args.no_timm:
        tbase = dict(source='timm', name=timm_name(variant), fused=True)
        modes[(f'timm {timm_name(variant)}', 'fused')] = tbase
        if not args.no_onnx:
            modes[(f'timm {timm_name(variant)}', 'fused-ort')] = dict(tbase, engine='ort')
    return modes


def config_modes(label, config, args, checkpoint=None, part='model', unfused=True,
                 extra=None):
    base = dict(source='config', config=config, checkpoint=checkpoint, part=part, **(extra or {}))
    modes = {}
    if unfused:
        modes[(label, 'unfused')] = dict(base, fused=False)
    modes[(label, 'fused')] = dict(base, fused=True)
    if not args.no_onnx:
        modes[(label, 'fused-ort')] = dict(base, fused=True, engine='ort')
    return modes


def write_temp_config(workdir, name, text):
    path = osp.join(workdir, name)
    with open(path, 'w') as f:
        f.write(text)
    return path


# ------------------------------------------------------------------------ reporting
def markdown(rows, peak, threads):
    lines = [f'CPU: {platform.processor() or platform.machine()}, {threads} threads, '
             f'sgemm peak {peak:.1f} GFLOP/s; latency = median ms at batch 1.', '']
    groups = []
    for row in rows:
        if row['group'] not in groups:
            groups.append(row['group'])
    for group in groups:
        grows = [r for r in rows if r['group'] == group]
        res = []
        for r in grows:
            if r['resolution'] not in res:
                res.append(r['resolution'])
        keys = []
        for r in grows:
            if (r['model'], r['mode']) not in keys:
                keys.append((r['model'], r['mode']))
        lines.append(f'### {group}')
        head = (['model', 'mode', 'params (M)', 'GMACs@256' if grows[0]['gmacs_256'] != ''
                 else 'GMACs'] + [f'{x} ms' for x in res]
                + ['img/s (batch)', f'peak RSS MB @{res[0]}/{res[-1]}',
                   f'% sgemm peak @{res[0]}'])
        lines.append('| ' + ' | '.join(map(str, head)) + ' |')
        lines.append('|' + '---|' * len(head))
        for key in keys:
            kr = {r['resolution']: r for r in grows if (r['model'], r['mode']) == key}
            first, last = kr[res[0]], kr[res[-1]]
            thr = [f"{r['throughput_img_s']} ({r['throughput_batch']}@{x})"
                   for x, r in kr.items() if r['throughput_img_s'] != '']
            mem = (f"{first['peak_rss_mb']}/{last['peak_rss_mb']}"
                   if first['peak_rss_mb'] != '' else '-')
            cells = ([key[0], key[1], first['params_m'],
                      first['gmacs_256'] if first['gmacs_256'] != '' else first['gmacs']]
                     + [kr[x]['latency_ms'] for x in res]
                     + [', '.join(thr) or '-', mem, first['pct_sgemm_peak']])
            lines.append('| ' + ' | '.join(map(str, cells)) + ' |')
        lines.append('')
    return lines


def latency_of(rows, group, model, mode, res):
    for r in rows:
        if (r['group'], r['model'], r['mode'], r['resolution']) == (group, model, mode, res):
            return r['latency_ms']
    return None


def ratio_lines(rows, args):
    """The comparisons the README quotes (ratios, bars)."""
    lines = []
    for variant in args.backbone:
        group = f'backbone {variant}'
        tname = f'timm {variant.replace("-", "_")}'
        for res in args.resolutions:
            for mode in ('fused', 'fused-ort'):
                ours = latency_of(rows, group, variant, mode, res)
                ref = latency_of(rows, group, tname, mode, res)
                if ours and ref:
                    bar = 1.05 if mode == 'fused' else 1.0
                    verdict = 'ok' if ours / ref <= bar else f'SLOWER than the {bar}x bar'
                    lines.append(f'- {variant} {mode} / timm {mode} at {res}: {ours / ref:.3f}x '
                                 f'({verdict})')
    for res in (384, 1024):
        rep = latency_of(rows, 'mixer ablation', 'fastvit-s12 RepMixer', 'fused', res)
        pool = latency_of(rows, 'mixer ablation', 'fastvit-s12 Pooling', 'fused', res)
        if rep and pool:
            lines.append(f'- RepMixer vs Pooling (fused eager) at {res}: '
                         f'{100 * (1 - rep / pool):.1f}% lower latency (paper, iPhone 12 Pro: '
                         f'{PAPER_MIXER[res]}%)')
        rep = latency_of(rows, 'mixer ablation', 'fastvit-s12 RepMixer', 'fused-ort', res)
        pool = latency_of(rows, 'mixer ablation', 'fastvit-s12 Pooling', 'fused-ort', res)
        if rep and pool:
            lines.append(f'- RepMixer vs Pooling (ORT) at {res}: {100 * (1 - rep / pool):.1f}% '
                         'lower latency')
    for mode in ('fused', 'fused-ort'):
        r50 = latency_of(rows, 'seg FPN vs R50', 'FPN-R50 (BN folded)', mode, 512)
        for name in SEG_CONFIGS:
            ours = latency_of(rows, 'seg FPN vs R50', name, mode, 512)
            if r50 and ours:
                lines.append(f'- Semantic FPN {name} / FPN-R50 at 512x512 ({mode}): '
                             f'{ours / r50:.3f}x latency')
    r50 = latency_of(rows, 'det Mask R-CNN vs R50', 'Mask R-CNN R50', 'eager', '800x1216')
    ours = latency_of(rows, 'det Mask R-CNN vs R50', 'Mask R-CNN FastViT-SA12', 'fused eager',
                      '800x1216')
    if r50 and ours:
        lines.append(f'- Mask R-CNN FastViT-SA12 (fused) / R50 at 800x1216, predict(): '
                     f'{ours / r50:.3f}x latency')
    return lines


def plot(rows, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = []
    for r in rows:
        if r['group'] not in groups and isinstance(r['resolution'], int):
            groups.append(r['group'])
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(6 * max(1, len(groups)), 4.5),
                             squeeze=False)
    for ax, group in zip(axes[0], groups):
        keys = []
        for r in rows:
            if r['group'] == group and (r['model'], r['mode']) not in keys:
                keys.append((r['model'], r['mode']))
        for key in keys:
            pts = [(r['resolution'], r['latency_ms']) for r in rows
                   if r['group'] == group and (r['model'], r['mode']) == key]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker='o',
                    label=f'{key[0]} {key[1]}')
        ax.set_title(group)
        ax.set_xlabel('input side (px)')
        ax.set_ylabel('latency (ms, batch 1)')
        ax.set_yscale('log')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def write_csv(rows, path):
    tmp = path + '.tmp'
    with open(tmp, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='hybridvit_bench_') as workdir:
        bench = Bench(args, workdir)
        for variant in args.backbone:
            bench.run_group(f'backbone {variant}', backbone_modes(variant, args),
                            args.resolutions)
        if args.config:
            label = osp.splitext(osp.basename(args.config))[0]
            bench.run_group(f'model {label}', config_modes(label, args.config, args,
                                                           args.checkpoint, args.part),
                            args.resolutions)
        if args.mixer_ablation:
            modes = {}
            modes.update(backbone_modes('fastvit-s12', args, label='fastvit-s12 RepMixer',
                                        timm=False))
            modes.update(backbone_modes('fastvit-s12', args, dict(token_mixer='pooling'),
                                        label='fastvit-s12 Pooling', timm=False))
            modes = {k: v for k, v in modes.items() if k[1] != 'unfused'}
            bench.run_group('mixer ablation', modes, args.resolutions, throughput=False)
        if args.compare_seg_r50:
            r50 = write_temp_config(workdir, 'fpn_r50_bench.py', SEG_R50)
            modes = config_modes('FPN-R50 (BN folded)', r50, args, unfused=False,
                                 extra=dict(fuse_conv_bn=True))
            for name, cfg in SEG_CONFIGS.items():
                modes.update(config_modes(name, cfg, args, unfused=False))
            bench.run_group('seg FPN vs R50', modes, [512], throughput=False)
        if args.compare_det_r50:
            r50 = write_temp_config(workdir, 'mask_rcnn_r50_bench.py', DET_R50)
            shape = (800, 1216)
            modes = {('Mask R-CNN R50', 'eager'): dict(
                         source='config', config=r50, part='predict', shape=shape,
                         cfg_options=DET_TEST_CFG),
                     ('Mask R-CNN FastViT-SA12', 'fused eager'): dict(
                         source='config', config=DET_CONFIG, part='predict', shape=shape,
                         fused=True, cfg_options=DET_TEST_CFG)}
            bench.run_det_predict('det Mask R-CNN vs R50', modes, shape)
    rows = bench.rows
    csv_path = osp.join(args.out_dir, 'benchmark.csv')
    png_path = osp.join(args.out_dir, 'benchmark.png')
    write_csv(rows, csv_path)
    plot(rows, png_path)
    lines = markdown(rows, bench.peak, args.threads) + ratio_lines(rows, args)
    text = '\n'.join(lines) + '\n'
    md_path = osp.join(args.out_dir, 'benchmark.md')
    with open(md_path + '.tmp', 'w') as f:
        f.write(text)
    os.replace(md_path + '.tmp', md_path)
    print(text)
    print(f'wrote {csv_path}, {png_path}, {md_path}')


if __name__ == '__main__':
    run_cli(main, 'benchmark.py')
