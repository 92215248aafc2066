"""Probe: can a hand-mesh config fit a few training images? Trains the config's model on the first
``--num`` training images (version 0, test pipeline: no augmentation; ``--augment``: the
config's training pipeline and all its versions) in batches of ``--batch`` and prints, every
``--every`` iterations, the losses, the mean 2D keypoint error of the projected skeleton (pixels of
the input crop) and the root-relative MPJPE on the first 16 of those images and, with
``--eval-num``, on the test split. A model that cannot drive these towards zero on 16 images has a
bug (loss, camera, labels), not too little data.

    python tools/analysis/hand_mesh_overfit.py CONFIG [--num 16] [--iters 300] [--lr 1e-3] \
        [--augment] [--eval-num 64] [--cfg-options model.head.loss_weights.keypoints_2d=1.0]
"""
import argparse
import json
import time

from hybridvit.utils.cli import UserError, run_cli


def parse_args():
    parser = argparse.ArgumentParser(description='overfit a few training images')
    parser.add_argument('config')
    parser.add_argument('--num', type=int, default=16, help='training images (the first ones)')
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--every', type=int, default=25, help='report interval (iterations)')
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--augment', action='store_true',
                        help="train with the config's training pipeline and versions")
    parser.add_argument('--eval-num', type=int, default=0, help='also score test samples')
    parser.add_argument('--lr', type=float, default=None,
                        help="AdamW learning rate (default: the config's)")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='write the last report as JSON here')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def evaluate(model, batches):
    """Mean 2D error (px of the input crop) and root-relative MPJPE (mm) over batches."""
    import torch
    model.eval()
    err_2d, mpjpe = [], []
    with torch.no_grad():
        for batch in batches:
            data = model.data_preprocessor(batch, False)
            for p in model(data['inputs'], data['data_samples'], mode='predict'):
                err_2d.append((p.pred_keypoints_2d - p.gt_keypoints_2d).norm(dim=-1).mean())
                mpjpe.append((p.pred_joints - p.gt_joints).norm(dim=-1).mean())
    model.train()
    return float(torch.stack(err_2d).mean()), float(torch.stack(mpjpe).mean()) * 1000


def main():
    args = parse_args()
    if args.num < 1 or args.iters < 1 or args.every < 1:
        raise UserError(f'--num, --iters and --every must be >= 1, got {args.num}, '
                        f'{args.iters}, {args.every}')
    import torch
    from mmengine.dataset import pseudo_collate

    import hybridvit.datasets  # noqa: F401
    import hybridvit.models  # noqa: F401
    from hybridvit.engine.runner_setup import check_datasets_exist, load_config
    from hybridvit.registry import DATASETS, MODELS
    torch.manual_seed(args.seed)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    check_datasets_exist(cfg, args.config, loaders=('train_dataloader', ))
    ds_cfg = dict(cfg.train_dataloader.dataset)
    fixed_cfg = dict(ds_cfg, pipeline=cfg.test_dataloader.dataset.pipeline, versions=(0, ),
                     indices=list(range(min(args.num, 16))), test_mode=False)
    seen = pseudo_collate([s for s in DATASETS.build(fixed_cfg)])  # scored training images
    if args.augment:
        dataset = DATASETS.build(dict(ds_cfg, test_mode=False))
        dataset = torch.utils.data.Subset(dataset, list(range(min(args.num, len(dataset)))))
    else:
        dataset = DATASETS.build(dict(fixed_cfg, indices=list(range(args.num))))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch, collate_fn=pseudo_collate, num_workers=1,
        sampler=torch.utils.data.RandomSampler(dataset, replacement=True,
                                               num_samples=args.iters * args.batch))
    test_batches = []
    if args.eval_num:
        test = DATASETS.build(dict(cfg.test_dataloader.dataset,
                                   indices=list(range(args.eval_num))))
        test_batches = [pseudo_collate([test[i] for i in range(j, min(j + 16, len(test)))])
                        for j in range(0, len(test), 16)]
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    lr = args.lr if args.lr is not None else cfg.optim_wrapper.optimizer.get('lr', 1e-3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr,
                                  weight_decay=cfg.optim_wrapper.optimizer.get('weight_decay', 0))
    print(f'{len(dataset)} training images, {args.iters} iterations of {args.batch}, AdamW lr '
          f'{lr}, augment={args.augment}', flush=True)
    start, report = time.time(), {}
    for it, batch in enumerate(loader, start=1):
        data = model.data_preprocessor(batch, True)
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        loss = sum(losses.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if it % args.every == 0 or it == args.iters:
            err_2d, mpjpe = evaluate(model, [seen])
            report = dict(iter=it, err_2d_px=round(err_2d, 2), mpjpe_mm=round(mpjpe, 1))
            if test_batches:
                err_2d, mpjpe = evaluate(model, test_batches)
                report.update(test_err_2d_px=round(err_2d, 2), test_mpjpe_mm=round(mpjpe, 1))
            report.update({k: round(float(v.detach()), 4) for k, v in losses.items()})
            print(json.dumps(report), f'({time.time() - start:.0f} s)', flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(report, f, indent=2)


if __name__ == '__main__':
    run_cli(main, 'hand_mesh_overfit.py')
