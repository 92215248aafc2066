"""Train a detector (mmdet), segmentor (mmseg) or hand-mesh model (hybridvit) from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]

The config's ``default_scope`` selects the library; mmengine's Runner does the training.
"""
import argparse
import os
import os.path as osp
import warnings

# mmengine imports the deprecated pkg_resources: keep that notice off the tool's stderr
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from hybridvit.utils.cli import UserError, run_cli, trust_checkpoint_hint  # noqa: E402


def parse_args():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a hybridvit / mmdet / mmseg model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the latest checkpoint in the work dir '
                        'when no file is given')
    parser.add_argument('--amp', action='store_true', help='mixed precision (needs a CUDA GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale lr by total batch / auto_scale_lr.base_batch_size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none')
    parser.add_argument('--trust-checkpoint', action='append', default=[], metavar='FILE',
                        help='allow full unpickling of this checkpoint (only for files you trust)')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of user errors')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    import torch
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import hybridvit.engine  # noqa: F401  (hooks)
    from hybridvit.compat import trust_checkpoint
    from hybridvit.engine.runner_setup import (add_default_hooks, build_dataloaders_checked,
                                               check_datasets_exist, load_config,
                                               setup_cpu_distributed)
    for path in args.trust_checkpoint:
        trust_checkpoint(path)

    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        if not torch.cuda.is_available():
            raise UserError('--amp needs a CUDA GPU (mmengine AmpOptimWrapper); '
                            'torch.cuda.is_available() is False on this machine')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise UserError(f'{args.config}: --auto-scale-lr needs auto_scale_lr.base_batch_size '
                            'in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if '://' not in args.resume and not osp.isfile(args.resume):
            raise UserError(f'--resume: checkpoint not found: {args.resume}')
        cfg.resume, cfg.load_from = True, args.resume

    check_datasets_exist(cfg, args.config)
    add_default_hooks(cfg)
    if args.launcher == 'pytorch':
        setup_cpu_distributed(cfg)

    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    build_dataloaders_checked(runner, args.config)
    with trust_checkpoint_hint('--trust-checkpoint {filename}'):  # load_from, resume, init_cfg
        runner.train()


if __name__ == '__main__':
    run_cli(main, 'train.py')
