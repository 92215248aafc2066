"""Check every image and label of a config's datasets and list the bad files.

    python tools/misc/check_dataset.py CONFIG [--loaders train_dataloader ...] [--cfg-options k=v]

For every dataset of the config's dataloaders (through ConcatDataset / RepeatDataset wrappers):
each image must exist, be non-empty, not be truncated (JPEG end marker / PNG IEND chunk) and
decode; each segmentation label must exist, decode, have the image's size and hold only class
ids of the dataset (after ``reduce_zero_label`` / ``label_map``) or the ignore index 255;
detection instances must have a known class id and a box of positive size.

Prints one ``PATH: problem`` line per bad file (stdout), then a summary per dataset.
Exit status: 0 all good, 1 bad files found, 2 a user error (missing config or dataset).
"""
import argparse
import os.path as osp
import sys
import warnings

# mmengine imports the deprecated pkg_resources: keep that notice off the tool's stderr
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

from hybridvit.utils.cli import UserError, is_own_bug, run_cli  # noqa: E402

IGNORE_INDEX = 255


def parse_args():
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='List unreadable / inconsistent dataset files')
    parser.add_argument('config', help='config file')
    parser.add_argument('--loaders', nargs='+',
                        default=['train_dataloader', 'val_dataloader', 'test_dataloader'],
                        help='dataloaders whose datasets are checked')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. train_dataloader.dataset.data_root=X')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of user errors')
    return parser.parse_args()


def image_problem(path: str):
    """``None`` if the image is readable, else what is wrong; also returns its (h, w)."""
    import cv2
    import numpy as np

    from hybridvit.utils.image_io import check_image_file
    try:
        data = check_image_file(path)
    except UserError as err:
        return str(err).replace(f': {path}', '').replace(path, '').strip(': '), None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return 'cannot decode image (corrupt or not an image file)', None
    return None, img.shape[:2]


def seg_label_problem(path: str, dataset, image_hw):
    """Problems of one segmentation label file (read like mmseg: PIL, palette indices)."""
    import numpy as np
    from PIL import Image
    if not osp.isfile(path):
        return 'label file not found'
    try:
        with Image.open(path) as im:
            label = np.array(im)
    except Exception as err:  # noqa: BLE001 - PIL raises many types for a bad file
        return f'cannot decode label ({type(err).__name__}: {err})'
    if label.ndim != 2:
        return f'label has shape {label.shape}, expected a single-channel HxW image'
    if image_hw is not None and tuple(label.shape) != tuple(image_hw):
        return (f'label is {label.shape[1]}x{label.shape[0]} but its image is '
                f'{image_hw[1]}x{image_hw[0]}')
    raw = np.unique(label).astype(np.int64)
    values = raw.copy()
    label_map = getattr(dataset, 'label_map', None)
    if label_map:
        values = np.array([label_map.get(int(v), v) for v in values])
    if getattr(dataset, 'reduce_zero_label', False):
        values = np.where(values == 0, IGNORE_INDEX, values - 1)
        values = np.where(values == IGNORE_INDEX - 1, IGNORE_INDEX, values)
    num_classes = len(dataset.metainfo.get('classes', ()))
    bad = sorted(int(v) for v in set(values.tolist()) if v != IGNORE_INDEX and
                 not 0 <= v < num_classes)
    if bad:
        how = ' (after reduce_zero_label)' if getattr(dataset, 'reduce_zero_label', False) else ''
        return (f'label values {bad}{how} outside the {num_classes} classes (expected '
                f'0..{num_classes - 1} or the ignore index {IGNORE_INDEX}); raw values in the '
                f'file: {raw.tolist()[:20]}')
    return None


def instance_problems(info: dict, num_classes: int):
    problems = []
    for j, inst in enumerate(info.get('instances') or []):
        label = inst.get('bbox_label')
        if label is not None and not 0 <= int(label) < num_classes:
            problems.append(f'instance {j}: class id {label} outside 0..{num_classes - 1}')
        box = inst.get('bbox')
        if box is not None and not (box[2] > box[0] and box[3] > box[1]):
            problems.append(f'instance {j}: empty box {list(box)}')
    return problems


def check_dataset(dataset, report) -> dict:
    """Check all samples of a built dataset; ``report(path, problem)`` for each bad file."""
    seen = set()
    counts = dict(samples=len(dataset), images=0, labels=0, bad=0)
    num_classes = len(dataset.metainfo.get('classes', ()))
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        img_path = info.get('img_path')
        image_hw = None
        if img_path and img_path not in seen:
            seen.add(img_path)
            counts['images'] += 1
            problem, image_hw = image_problem(img_path)
            if problem:
                counts['bad'] += 1
                report(img_path, problem)
        seg_path = info.get('seg_map_path')
        if seg_path and seg_path not in seen:
            seen.add(seg_path)
            counts['labels'] += 1
            problem = seg_label_problem(seg_path, dataset, image_hw)
            if problem:
                counts['bad'] += 1
                report(seg_path, problem)
        for problem in instance_problems(info, num_classes):
            counts['bad'] += 1
            report(img_path, problem)
    return counts


def main():
    args = parse_args()
    from mmengine.registry import DATASETS, init_default_scope

    from hybridvit.engine.runner_setup import _leaf_datasets, check_datasets_exist, load_config
    cfg = load_config(args.config, args.cfg_options)
    check_datasets_exist(cfg, args.config, loaders=tuple(args.loaders))
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    import hybridvit.datasets  # noqa: F401  (FreiHAND)

    def report(path, problem):
        print(f'{path}: {problem}', flush=True)

    total_bad, checked = 0, set()
    for loader in args.loaders:
        loader_cfg = cfg.get(loader)
        if not loader_cfg:
            continue
        for ds_cfg in _leaf_datasets(loader_cfg.get('dataset')):
            ds_cfg = dict(ds_cfg, pipeline=[])
            key = repr(sorted((k, repr(v)) for k, v in ds_cfg.items()))
            if key in checked:  # e.g. test_dataloader = val_dataloader
                continue
            checked.add(key)
            try:
                dataset = DATASETS.build(ds_cfg)
                dataset.full_init()
            except (ValueError, KeyError, TypeError, AssertionError, OSError) as err:
                if is_own_bug(err):
                    raise
                ann = ds_cfg.get('ann_file') or ds_cfg.get('data_root')
                report(ann, f'cannot load the dataset ({type(err).__name__}: {err})')
                total_bad += 1
                continue
            counts = check_dataset(dataset, report)
            total_bad += counts['bad']
            name = str(ds_cfg.get('type', '?')).split('.')[-1]
            print(f'{loader}: {name} at {ds_cfg.get("data_root")}: {counts["samples"]} samples, '
                  f'{counts["images"]} images, {counts["labels"]} label files checked, '
                  f'{counts["bad"]} problems', flush=True)
    print('all files OK' if total_bad == 0 else f'{total_bad} problems found')
    if total_bad:
        sys.exit(1)


if __name__ == '__main__':
    run_cli(main, 'check_dataset.py')
