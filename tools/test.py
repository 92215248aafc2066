"""Evaluate a checkpoint: COCO bbox/segm AP (mmdet), mIoU (mmseg), PA-MPJPE etc. (hand mesh).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out PATH] [--show-dir DIR]
                                           [--tta] [--cfg-options k=v ...] [--launcher ...]

``--out``: mmdet: a ``.pkl`` of raw results; mmseg: a folder of predicted label PNGs;
hand mesh: a folder (created) that receives FreiHAND's ``pred.json`` (camera frame, what the
evaluation server scores) and, when the split has labels, the server's ``scores.txt``. Metrics
are printed and written to ``<work_dir>/test_metrics.json``. The checkpoint must fit the model
exactly (a clear error lists mismatched keys otherwise); it is only read.

``--tta``: test-time augmentation as in mmdet / mmseg: the config's ``tta_model`` wraps its
``model`` and ``tta_pipeline`` replaces the test pipeline (the hand configs average in-plane
rotated views, :class:`hybridvit.models.estimators.HandMeshTTAModel`).
"""
import argparse
import json
import os
import os.path as osp
import warnings

# mmengine imports the deprecated pkg_resources: keep that notice off the tool's stderr
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from hybridvit.utils.cli import UserError, run_cli, trust_checkpoint_hint  # noqa: E402


def parse_args():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Test a hybridvit / mmdet / mmseg model')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (path or URL)')
    parser.add_argument('--work-dir', help='where logs and metrics go')
    parser.add_argument('--out', help='dump predictions (format depends on the task)')
    parser.add_argument('--show-dir', help='draw every prediction into this folder (the '
                        'same pictures as demo/image_demo.py)')
    parser.add_argument('--tta', action='store_true', help="test-time augmentation: the "
                        "config's tta_model and tta_pipeline")
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
    """``--out``: the task adapter's dump; ``--show-dir``: :class:`DrawResultsHook`."""
    from hybridvit.apis import get_task
    task = get_task(cfg)
    if args.out:
        try:
            task.configure_test_outputs(cfg, args.out)
        except UserError as err:
            raise UserError(f'--out: {err}') from err
    return task


def _enable_tta(cfg, config_path: str) -> None:
    """``--tta``: wrap ``model`` in ``tta_model`` and test with ``tta_pipeline``."""
    from mmengine.config import ConfigDict
    missing = [k for k in ('tta_model', 'tta_pipeline') if cfg.get(k) is None]
    if missing:
        raise UserError(f'--tta: config {config_path} defines no {" / ".join(missing)}')
    if cfg.get('test_dataloader') is None:
        raise UserError(f'--tta: config {config_path} defines no test_dataloader')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main():
    args = parse_args()
    from mmengine.model import BaseTTAModel, is_model_wrapper
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    import hybridvit.engine  # noqa: F401
    from hybridvit.compat import trust_checkpoint
    from hybridvit.engine.runner_setup import (build_dataloaders_checked, check_datasets_exist,
                                               load_config, setup_cpu_distributed)
    from hybridvit.models.utils.checkpoint import load_state_dict_strictly, read_state_dict
    from hybridvit.utils.atomic import atomic_open

    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    if args.trust_checkpoint:
        trust_checkpoint(args.checkpoint)
    cfg = load_config(args.config, args.cfg_options)
    cfg.launcher = args.launcher
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    check_datasets_exist(cfg, args.config, loaders=('test_dataloader', ))
    task = _configure_outputs(cfg, args)
    if args.tta:
        _enable_tta(cfg, args.config)
    if args.launcher == 'pytorch':
        setup_cpu_distributed(cfg)

    # Read the checkpoint before building the runner, then load it strictly: mmengine's
    # non-strict loading would evaluate a mismatched model with random layers.
    with trust_checkpoint_hint('--trust-checkpoint'):
        state_dict = read_state_dict(args.checkpoint)
    cfg.load_from = None
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    if isinstance(model, BaseTTAModel):  # --tta: the checkpoint is the wrapped model's
        model = model.module
    load_state_dict_strictly(model, state_dict, source=args.checkpoint)
    runner._has_loaded = True
    if args.show_dir:
        from hybridvit.engine.draw_hook import DrawResultsHook
        runner.register_hook(DrawResultsHook(osp.abspath(args.show_dir), task))
    build_dataloaders_checked(runner, args.config, loaders=('test_dataloader', ))
    metrics = runner.test()

    metrics = {k: (float(v) if hasattr(v, '__float__') else v) for k, v in metrics.items()}
    out = osp.join(cfg.work_dir, 'test_metrics.json')
    with atomic_open(out, 'w') as f:
        json.dump(dict(config=args.config, checkpoint=args.checkpoint, metrics=metrics), f,
                  indent=2)
    print(json.dumps(metrics))
    print(f'metrics written to {out}')


if __name__ == '__main__':
    run_cli(main, 'test.py')
