"""Score the mean-pose predictor on a hand-mesh config's test split: the baseline a trained
model must beat clearly (it predicts the training set's mean root-relative joints and mesh).

    python tools/analysis/hand_mesh_baseline.py CONFIG [--out baseline.json]
"""
import argparse
import json

from hybridvit.utils.atomic import atomic_open
from hybridvit.utils.cli import run_cli


def parse_args():
    parser = argparse.ArgumentParser(description='mean-pose baseline for hand-mesh configs')
    parser.add_argument('config')
    parser.add_argument('--out', help='write the metrics as JSON here')
    parser.add_argument('--debug', action='store_true')
    return parser.parse_args()


def _dataset(cfg_ds):
    import hybridvit.datasets  # noqa: F401
    from hybridvit.registry import DATASETS
    cfg_ds = dict(cfg_ds)
    cfg_ds.pop('pipeline', None)
    return DATASETS.build(dict(cfg_ds, pipeline=[]))


def main():
    args = parse_args()
    import numpy as np

    from hybridvit.engine.runner_setup import check_datasets_exist, load_config
    from hybridvit.evaluation.functional import UNALIGNED_KEYS, hand_mesh_metrics
    cfg = load_config(args.config)
    check_datasets_exist(cfg, args.config, loaders=('train_dataloader', 'test_dataloader'))
    train = _dataset(cfg.train_dataloader.dataset)
    test = _dataset(cfg.test_dataloader.dataset)

    def stack(ds, key):
        return np.stack([ds.get_data_info(i)[key] for i in range(len(ds))]).astype(np.float64)

    train_j, train_v = stack(train, 'joints_3d'), stack(train, 'verts_3d')
    mean_j = (train_j - train_j[:, :1]).mean(0)  # (21, 3) root-relative mean pose
    mean_v = (train_v - train_j[:, :1]).mean(0)  # (V, 3)
    gt_j, gt_v = stack(test, 'joints_3d'), stack(test, 'verts_3d')
    n = len(gt_j)
    metrics = hand_mesh_metrics(np.repeat(mean_j[None], n, 0), gt_j - gt_j[:, :1],
                                np.repeat(mean_v[None], n, 0), gt_v - gt_j[:, :1])
    # root-relative inputs: the server's unaligned numbers (camera frame) do not apply
    metrics = {k: v for k, v in metrics.items() if k not in UNALIGNED_KEYS}
    print(f'mean-pose predictor on {n} test samples (train mean of {len(train_j)}):')
    print(json.dumps({k: round(float(v), 4) for k, v in metrics.items()}))
    if args.out:
        with atomic_open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2)


if __name__ == '__main__':
    run_cli(main, 'hand_mesh_baseline.py')
