"""Plot training loss (and any other scalar) from an mmengine work dir's ``scalars.json``.

    python tools/analysis/plot_loss.py WORK_DIR [--keys loss decode.acc_seg] [--out loss.png]
"""
import argparse
import glob
import json
import os
import os.path as osp

from hybridvit.utils.cli import UserError, run_cli


def parse_args():
    parser = argparse.ArgumentParser(description='plot training curves of an mmengine run')
    parser.add_argument('work_dir')
    parser.add_argument('--keys', nargs='+', default=['loss'])
    parser.add_argument('--out', help='PNG path (default: WORK_DIR/loss_curve.png)')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main():
    args = parse_args()
    files = sorted(glob.glob(osp.join(args.work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise UserError(f'no */vis_data/scalars.json under {args.work_dir} (is it a work dir?)')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    series = {k: {} for k in args.keys}
    for path in files:  # later runs (resumed) overwrite earlier steps
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                for k in args.keys:
                    if k in rec and 'step' in rec:
                        series[k][rec['step']] = rec[k]
    fig, axes = plt.subplots(1, len(args.keys), figsize=(5 * len(args.keys), 3.5), squeeze=False)
    for ax, k in zip(axes[0], args.keys):
        if not series[k]:
            raise UserError(f'key {k!r} not found in {files}')
        steps = sorted(series[k])
        ax.plot(steps, [series[k][s] for s in steps])
        ax.set_xlabel('iteration')
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    fig.suptitle(osp.basename(osp.normpath(args.work_dir)))
    fig.tight_layout()
    out = args.out or osp.join(args.work_dir, 'loss_curve.png')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f'saved {out}')


if __name__ == '__main__':
    run_cli(main, 'plot_loss.py')
