"""The CPU benchmark suite behind ``tools/analysis/benchmark.py``: groups of modes, the runner
that times them (:mod:`hybridvit.deploy.benchmark`), and the report (CSV, markdown, plot).

A :class:`Group` holds the modes timed together (``{(model label, mode label): spec}``, specs
as in :mod:`hybridvit.deploy.bench_models`) and the comparisons its report prints; labels are
made once, where a group is built, and read back from the group only.
"""
import csv
import os.path as osp
import platform
import re
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from hybridvit.utils.atomic import atomic_open, atomic_write

from .bench_models import build_callable, build_torch_module, timm_name
from .benchmark import (EAGER, ORT, count_flops, interleaved_latency, median_ms, ort_callable,
                        peak_rss_increase_mb, sgemm_gflops, torch_callable)
from .onnx_export import export_onnx, parameter_count

__all__ = ['COLUMNS', 'Comparison', 'Group', 'BenchmarkRunner', 'backbone_group',
           'config_group', 'mixer_ablation_group', 'seg_r50_group', 'det_r50_group',
           'markdown', 'comparison_lines', 'write_csv', 'plot']

BUILDER = 'hybridvit.deploy.bench_models:build_callable'
COLUMNS = ['group', 'model', 'mode', 'resolution', 'latency_ms', 'latency_ms_min', 'runs',
           'throughput_img_s', 'throughput_batch', 'peak_rss_mb', 'params_m', 'gmacs',
           'gmacs_256', 'gflops_per_s', 'pct_sgemm_peak', 'threads']
# mode labels and the spec keys that make them
MODE_SPECS = {'unfused': dict(fused=False), 'fused': dict(fused=True),
              'fused-ort': dict(fused=True, engine=ORT)}
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
DET_SHAPE = (800, 1216)
# identical post-processing for both detectors, and every one of the 100 boxes reaches the
# mask head (random weights would otherwise give ~0 boxes above the default 0.05 threshold)
DET_TEST_CFG = {'model.test_cfg.rcnn.score_thr': 0.0}

Key = Tuple[str, str]  # (model label, mode label)


class Comparison(NamedTuple):
    """One report line: ``text(ours latency / reference latency, resolution)``."""
    ours: Key
    reference: Key
    text: Callable[[float, object], Optional[str]]


class Group(NamedTuple):
    """Modes timed together, alternately (per engine), and the comparisons between them.

    Attributes:
        title: table title (also the CSV ``group`` column).
        modes: ``{(model label, mode label): spec}``.
        resolutions: square input sides (``predict`` groups: one ``(H, W)``).
        comparisons: report lines computed from this group's rows.
        throughput: also time ``--batch`` images at the throughput resolutions.
        predict: time the full ``model.test_step`` (detectors) instead of a module.
    """
    title: str
    modes: Dict[Key, dict]
    resolutions: Sequence
    comparisons: Sequence[Comparison] = ()
    throughput: bool = True
    predict: bool = False


def _modes(label: str, base: dict, modes: Sequence[str]) -> Dict[Key, dict]:
    return {(label, mode): dict(base, **MODE_SPECS[mode]) for mode in modes}


# ------------------------------------------------------------------------ groups
def backbone_group(variant: str, resolutions: Sequence[int], timm: bool = True,
                   onnx: bool = True) -> Group:
    """Our backbone unfused / fused / fused ORT, and timm's fused ``features_only`` model."""
    engines = ['unfused', 'fused'] + (['fused-ort'] if onnx else [])
    modes = _modes(variant, dict(source='backbone', name=variant), engines)
    comparisons = []
    if timm:
        reference = f'timm {timm_name(variant)}'
        modes.update(_modes(reference, dict(source='timm', name=timm_name(variant)),
                            engines[1:]))
        for mode, bar in (('fused', 1.05), ('fused-ort', 1.0)):
            if mode in engines:
                comparisons.append(Comparison(
                    (variant, mode), (reference, mode),
                    lambda r, res, mode=mode, bar=bar: (
                        f'- {variant} {mode} / timm {mode} at {res}: {r:.3f}x '
                        f'({"ok" if r <= bar else f"SLOWER than the {bar}x bar"})')))
    return Group(f'backbone {variant}', modes, resolutions, comparisons)


def config_group(config: str, resolutions: Sequence[int], checkpoint: Optional[str] = None,
                 part: str = 'model', onnx: bool = True) -> Group:
    """A whole model (or its backbone) from a config: unfused / fused / fused ORT."""
    label = osp.splitext(osp.basename(config))[0]
    base = dict(source='config', config=config, checkpoint=checkpoint, part=part)
    return Group(f'model {label}',
                 _modes(label, base, ['unfused', 'fused'] + (['fused-ort'] if onnx else [])),
                 resolutions)


def mixer_ablation_group(resolutions: Sequence[int], onnx: bool = True) -> Group:
    """FastViT-S12 with RepMixer vs ``token_mixer='pooling'`` (the paper's ablation), fused."""
    engines = ['fused'] + (['fused-ort'] if onnx else [])
    labels = {'RepMixer': {}, 'Pooling': dict(token_mixer='pooling')}
    modes = {}
    for mixer, kwargs in labels.items():
        modes.update(_modes(f'fastvit-s12 {mixer}',
                            dict(source='backbone', name='fastvit-s12', kwargs=kwargs), engines))
    rep, pool = (f'fastvit-s12 {m}' for m in labels)
    comparisons = [Comparison(
        (rep, mode), (pool, mode),
        lambda r, res, mode=mode: f'- RepMixer vs Pooling ({mode}) at {res}: '
        f'{100 * (1 - r):.1f}% lower latency' + (
            f' (paper, iPhone 12 Pro: {PAPER_MIXER[res]}%)' if res in PAPER_MIXER else ''))
        for mode in engines]
    return Group('mixer ablation', modes, resolutions, comparisons, throughput=False)


def seg_r50_group(r50_config: str, onnx: bool = True) -> Group:
    """Semantic FPN at 512x512: mmseg ResNetV1c-50 (BN folded) vs FastViT-T8 / SA12 (fused)."""
    engines = ['fused'] + (['fused-ort'] if onnx else [])
    r50 = 'FPN-R50 (BN folded)'
    modes = _modes(r50, dict(source='config', config=r50_config, fuse_conv_bn=True), engines)
    comparisons = []
    for name, config in SEG_CONFIGS.items():
        modes.update(_modes(name, dict(source='config', config=config), engines))
        comparisons += [Comparison(
            (name, mode), (r50, mode),
            lambda r, res, name=name, mode=mode: f'- Semantic FPN {name} / FPN-R50 at '
            f'{res}x{res} ({mode}): {r:.3f}x latency') for mode in engines]
    return Group('seg FPN vs R50', modes, [512], comparisons, throughput=False)


def det_r50_group(r50_config: str) -> Group:
    """Mask R-CNN ``predict()`` at 800x1216: R50 vs FastViT-SA12 (fused), eager."""
    base = dict(source='config', part='predict', shape=DET_SHAPE, cfg_options=DET_TEST_CFG)
    r50, ours = ('Mask R-CNN R50', 'eager'), ('Mask R-CNN FastViT-SA12', 'fused eager')
    modes = {r50: dict(base, config=r50_config),
             ours: dict(base, config=DET_CONFIG, fused=True)}
    comparisons = [Comparison(ours, r50, lambda r, res: (
        f'- Mask R-CNN FastViT-SA12 (fused) / R50 at {res}, predict(): {r:.3f}x latency'))]
    return Group('det Mask R-CNN vs R50', modes, [DET_SHAPE], comparisons, throughput=False,
                 predict=True)


# ------------------------------------------------------------------------ runner
def _slug(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9.]+', '-', text).strip('-')


class BenchmarkRunner:
    """Times groups and collects one CSV row per (group, model, mode, resolution).

    Args:
        workdir: folder for the exported ONNX files.
        threads: PyTorch and ONNX Runtime intra-op threads (the same for both).
        runs: timed repetitions per mode.
        warmup: untimed calls per mode.
        batch: batch of the throughput measurement (0: none).
        throughput_resolutions: where throughput is measured.
        memory: measure the peak RSS increase in child processes.
        sgemm_size: side of the ``torch.mm`` peak measurement.
    """

    def __init__(self, workdir: str, threads: int = 2, runs: int = 20, warmup: int = 3,
                 batch: int = 8, throughput_resolutions: Sequence = (), memory: bool = True,
                 sgemm_size: int = 2048):
        import torch
        self.workdir = workdir
        self.threads, self.runs, self.warmup, self.batch = threads, runs, warmup, batch
        self.throughput_resolutions = list(throughput_resolutions)
        self.memory = memory
        self.rows: List[dict] = []
        self.comparisons: List[Tuple[Group, Comparison]] = []
        torch.set_num_threads(threads)
        self.peak = sgemm_gflops(threads, n=sgemm_size)
        self._modules = {}
        self._onnx = {}

    # -------------------------------------------------------------------- helpers
    @staticmethod
    def _torch_spec(spec: dict) -> dict:
        return {k: v for k, v in spec.items() if k not in ('engine', 'onnx')}

    def module(self, spec: dict):
        """The eager module of ``spec`` (built once, shared by its eager and ORT modes)."""
        key = repr(sorted(self._torch_spec(spec).items()))
        if key not in self._modules:
            self._modules[key] = build_torch_module(self._torch_spec(spec))
        return self._modules[key]

    def export(self, key: Key, spec: dict, res: int) -> str:
        """Export the module of ``spec`` at ``res`` (once), named after its labels."""
        import torch
        spec_key = (repr(sorted(self._torch_spec(spec).items())), res)
        if spec_key not in self._onnx:
            path = osp.join(self.workdir, f'{len(self._onnx):03d}_{_slug(key[0])}_{res}.onnx')
            torch.manual_seed(0)
            export_onnx(self.module(spec), torch.randn(1, 3, res, res), path, dynamic='batch',
                        threads=self.threads)
            self._onnx[spec_key] = path
        spec.setdefault('onnx', {})[res] = self._onnx[spec_key]
        return self._onnx[spec_key]

    def callable(self, key: Key, spec: dict, res: int):
        if spec.get('engine') == ORT:
            return ort_callable(self.export(key, spec, res), self.threads)
        return torch_callable(self.module(spec))

    def flops(self, spec: dict, res: int) -> int:
        import torch
        return count_flops(self.module(spec), torch.randn(1, 3, res, res))

    def _row(self, group, key, res, seconds, flops, params, gmacs_256='', digits=3, **extra):
        ms = median_ms(seconds)
        row = dict(group=group.title, model=key[0], mode=key[1], resolution=res,
                   latency_ms=round(ms, digits), latency_ms_min=round(1e3 * min(seconds), digits),
                   runs=len(seconds), throughput_img_s='', throughput_batch='', peak_rss_mb='',
                   params_m=round(params / 1e6, 3), gmacs=round(flops / 2e9, 3),
                   gmacs_256=gmacs_256, gflops_per_s=round(flops / 1e9 / (ms / 1e3), 2),
                   pct_sgemm_peak=round(100 * flops / 1e9 / (ms / 1e3) / self.peak, 1),
                   threads=self.threads)
        row.update(extra)
        self.rows.append(row)
        return row

    # -------------------------------------------------------------------- groups
    def run(self, group: Group) -> None:
        """Time ``group`` (alternately, per engine) and append its rows."""
        self.comparisons += [(group, c) for c in group.comparisons]
        if group.predict:
            return self._run_predict(group)
        import torch
        engines = {key: spec.get('engine', EAGER) for key, spec in group.modes.items()}
        params = {k: parameter_count(self.module(s)) for k, s in group.modes.items()}
        flops256 = {k: self.flops(s, 256) for k, s in group.modes.items()}
        for res in group.resolutions:
            t0 = time.time()
            calls = {k: self.callable(k, s, res) for k, s in group.modes.items()}
            lat = interleaved_latency(calls, torch.randn(1, 3, res, res), self.runs,
                                      self.warmup, engines=engines)
            thr = {}
            if group.throughput and self.batch and res in self.throughput_resolutions:
                times = interleaved_latency(calls, torch.randn(self.batch, 3, res, res),
                                            max(3, self.runs // 4), 1, engines=engines)
                thr = {k: self.batch / (median_ms(v) / 1e3) for k, v in times.items()}
            for key, spec in group.modes.items():
                flops = flops256[key] if res == 256 else self.flops(spec, res)
                self._row(group, key, res, lat[key], flops, params[key],
                          gmacs_256=round(flops256[key] / 2e9, 3),
                          throughput_img_s=round(thr[key], 2) if key in thr else '',
                          throughput_batch=self.batch if key in thr else '')
            del calls
            print(f'[{group.title}] {res}x{res}: ' + ', '.join(
                f'{k[0]} {k[1]} {median_ms(v):.1f} ms' for k, v in lat.items())
                + f'  ({time.time() - t0:.0f} s)', flush=True)
        if self.memory:
            for key, spec in group.modes.items():
                if spec.get('engine') == ORT:
                    for res in group.resolutions:
                        self.export(key, spec, res)
                mem = peak_rss_increase_mb(BUILDER, spec, group.resolutions, self.threads)
                for row in self.rows:
                    if (row['group'], row['model'], row['mode']) == (group.title, *key):
                        row['peak_rss_mb'] = round(mem[row['resolution']], 1)

    def _run_predict(self, group: Group) -> None:
        """Full ``model.test_step`` latency of detectors (eager), alternately."""
        import torch
        (shape, ) = group.resolutions
        res = f'{shape[0]}x{shape[1]}'
        calls = {key: build_callable(spec, 0, self.threads) for key, spec in group.modes.items()}
        lat = interleaved_latency(calls, torch.empty(0), max(3, self.runs // 2), 1)
        for key, spec in group.modes.items():
            mem = ('' if not self.memory else
                   round(peak_rss_increase_mb(BUILDER, spec, [0], self.threads)[0], 1))
            self._row(group, key, res, lat[key], count_flops(calls[key]),
                      parameter_count(calls[key].model), digits=1, peak_rss_mb=mem)
        print(f'[{group.title}] ' + ', '.join(f'{k[0]} {median_ms(v):.0f} ms'
                                             for k, v in lat.items()))


# ------------------------------------------------------------------------ reporting
def _unique(items):
    return list(dict.fromkeys(items))


def markdown(rows: List[dict], peak: float, threads: int) -> List[str]:
    """One markdown table per group (latency per resolution, throughput, memory, % peak)."""
    lines = [f'CPU: {platform.processor() or platform.machine()}, {threads} threads, '
             f'sgemm peak {peak:.1f} GFLOP/s; latency = median ms at batch 1.', '']
    for group in _unique(r['group'] for r in rows):
        grows = [r for r in rows if r['group'] == group]
        res = _unique(r['resolution'] for r in grows)
        lines.append(f'### {group}')
        head = (['model', 'mode', 'params (M)', 'GMACs@256' if grows[0]['gmacs_256'] != ''
                 else 'GMACs'] + [f'{x} ms' for x in res]
                + ['img/s (batch)', f'peak RSS MB @{res[0]}/{res[-1]}',
                   f'% sgemm peak @{res[0]}'])
        lines.append('| ' + ' | '.join(map(str, head)) + ' |')
        lines.append('|' + '---|' * len(head))
        for key in _unique((r['model'], r['mode']) for r in grows):
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


def comparison_lines(rows: List[dict], comparisons: Sequence[Tuple[Group, Comparison]]
                     ) -> List[str]:
    """The ratios the README quotes, from each group's :class:`Comparison` s."""
    latency = {(r['group'], r['model'], r['mode'], r['resolution']): r['latency_ms']
               for r in rows}
    lines = []
    for group, comparison in comparisons:
        for res in group.resolutions:
            res = f'{res[0]}x{res[1]}' if isinstance(res, tuple) else res
            ours = latency.get((group.title, *comparison.ours, res))
            ref = latency.get((group.title, *comparison.reference, res))
            if ours and ref:
                lines.append(comparison.text(ours / ref, res))
    return lines


def plot(rows: List[dict], path: str) -> None:
    """Latency vs input side, one panel per group with square resolutions (atomic PNG)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    groups = _unique(r['group'] for r in rows if isinstance(r['resolution'], int))
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(6 * max(1, len(groups)), 4.5),
                             squeeze=False)
    for ax, group in zip(axes[0], groups):
        for key in _unique((r['model'], r['mode']) for r in rows if r['group'] == group):
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
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format='png')
    plt.close(fig)


def write_csv(rows: List[dict], path: str) -> None:
    """The rows as CSV (:data:`COLUMNS`), atomically."""
    with atomic_open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
