"""Fuse every reparameterisable block of a trained model (any task) and save a deploy checkpoint.

    python tools/deploy/reparameterize.py CONFIG CHECKPOINT OUT [--shape H W] [--tol 1e-4]

The fused model is checked against the original on a random input (relative error < --tol)
BEFORE anything is written; the result is then loaded strictly into the config's deploy variant
(``model.backbone.deploy=True``) to prove it fits, and written atomically.
"""
import argparse
import os
import os.path as osp

from hybridvit.utils.cli import UserError, run_cli


def parse_args():
    parser = argparse.ArgumentParser(description='Reparameterise (fuse) a trained model')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', help='output checkpoint (.pth)')
    parser.add_argument('--shape', type=int, nargs=2, default=[256, 256], metavar=('H', 'W'),
                        help='random input size used for the equivalence check')
    parser.add_argument('--tol', type=float, default=1e-4, help='max relative error allowed')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def main():
    args = parse_args()
    import torch

    from hybridvit.apis import get_task, init_model
    from hybridvit.models.utils import reparameterize_model
    from hybridvit.models.utils.checkpoint import (load_state_dict_strictly,
                                                   save_checkpoint_atomically)
    from hybridvit.utils.outputs import max_relative_error

    if osp.abspath(args.out) == osp.abspath(args.checkpoint):
        raise UserError(f'refusing to overwrite the input checkpoint {args.checkpoint}')
    if not osp.isfile(args.checkpoint):
        raise UserError(f'checkpoint not found: {args.checkpoint}')
    model = init_model(args.config, args.checkpoint)
    task = get_task(model)
    fused = reparameterize_model(model)

    torch.manual_seed(0)
    x = torch.randn(1, 3, *args.shape)
    ref = task.comparable_outputs(model, x)
    new = task.comparable_outputs(fused, x)
    err = max_relative_error(ref, new)
    print(f'fused vs original on a random {args.shape[0]}x{args.shape[1]} input: '
          f'max relative error {err:.2e} over {len(ref)} output tensors')
    if not err < args.tol:
        raise UserError(f'fused model differs from the original (relative error {err:.2e} >= '
                        f'{args.tol}); nothing written')
    n_before = sum(p.numel() for p in model.parameters())
    n_after = sum(p.numel() for p in fused.parameters())
    print(f'parameters: {n_before / 1e6:.3f} M -> {n_after / 1e6:.3f} M')

    deploy_model = init_model(args.config, None, cfg_options={'model.backbone.deploy': True}) \
        if 'backbone' in model.cfg.model else None
    state_dict = fused.state_dict()
    if deploy_model is not None:
        load_state_dict_strictly(deploy_model, state_dict, source='fused state dict')
        print('the deploy variant (model.backbone.deploy=True) loads the fused weights strictly')

    meta = dict(dataset_meta=model.dataset_meta, deploy=True,
                source_checkpoint=osp.abspath(args.checkpoint), config=model.cfg.pretty_text)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    save_checkpoint_atomically(state_dict, args.out, meta=meta)
    print(f'saved {args.out}')


if __name__ == '__main__':
    run_cli(main, 'reparameterize.py')
