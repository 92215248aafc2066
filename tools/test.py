"""Evaluate a checkpoint: COCO bbox/segm AP (mmdet), mIoU (mmseg), PA-MPJPE etc. (hand mesh).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--show-dir DIR]
                                           [--cfg-options k=v ...] [--launcher ...]

``--out``: mmdet: a ``.pkl`` of raw results; mmseg: a folder of predicted label PNGs;
hand mesh: a prefix for FreiHAND's ``pred.json``. Metrics are printed and written to
``<work_dir>/test_metrics.json``. The checkpoint must fit the model exactly (a clear error lists
mismatched keys otherwise); it is only read.
"""
import argparse
import json
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
# mmengine imports the deprecated pkg_resources: keep that notice off the tool's stderr
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from hybridvit.utils.cli import UserError, run_cli  # noqa: E402


def parse_args():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Test a hybridvit / mmdet / mmseg model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (path or URL)')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument('--out', help='dump predictions (format depends on the task)')
    parser.add_argument('--show-dir', help='draw predictions into this folder')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow full unpickling of CHECKPOINT (only for files you trust)')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of user errors')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _configure_outputs(cfg, args):
    scope = cfg.get('default_scope', 'mmengine')
    if args.show_dir:
        if scope in ('mmdet', 'mmseg'):
            vis = cfg.default_hooks.visualization
            vis.draw = True
            if scope == 'mmdet':
                vis.test_out_dir = osp.abspath(args.show_dir)
            else:
                cfg.visualizer.save_dir = osp.abspath(args.show_dir)
        else:
            raise UserError('--show-dir is supported for detection and segmentation configs; '
                            'for hand mesh use demo/image_demo.py')
    if args.out:
        if scope == 'mmdet':
            if not args.out.endswith(('.pkl', '.pickle')):
                raise UserError(f'--out must be a .pkl file for detection, got {args.out}')
            evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) else [
                cfg.test_evaluator]
            cfg.test_evaluator = list(evaluators) + [
                dict(type='DumpDetResults', out_file_path=args.out)]
        elif scope == 'mmseg':
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:
            cfg.test_evaluator['outfile_prefix'] = args.out


def main():
    args = parse_args()
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import hybridvit.engine  # noqa: F401
    from hybridvit.compat import trust_checkpoint
    from hybridvit.engine.runner_setup import (build_dataloaders_checked, check_datasets_exist,
                                               load_config, setup_cpu_distributed)
    from hybridvit.models.utils.checkpoint import load_state_dict_strictly, read_state_dict

    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    if args.trust_checkpoint:
        trust_checkpoint(args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_datasets_exist(cfg, args.config, loaders=('test_dataloader', ))
    _configure_outputs(cfg, args)
    if args.launcher == 'pytorch':
        setup_cpu_distributed(cfg)

    # Read the checkpoint before building the runner, then load it strictly: mmengine's
    # non-strict loading would evaluate a mismatched model with random layers.
    state_dict = read_state_dict(args.checkpoint)
    cfg.load_from = None
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    load_state_dict_strictly(model, state_dict, source=args.checkpoint)
    runner._has_loaded = True
    build_dataloaders_checked(runner, args.config, loaders=('test_dataloader', ))
    metrics = runner.test()

    metrics = {k: (float(v) if hasattr(v, '__float__') else v) for k, v in metrics.items()}
    os.makedirs(cfg.work_dir, exist_ok=True)
    out = osp.join(cfg.work_dir, 'test_metrics.json')
    with open(out + '.tmp', 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint, metrics=metrics), f,
                  indent=2)
    os.replace(out + '.tmp', out)
    print(json.dumps(metrics))
    print(f'metrics written to {out}')


if __name__ == '__main__':
    run_cli(main, 'test.py')
