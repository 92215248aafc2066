"""Bad inputs give one clear line on stderr (naming the file / key / value and what was
expected) and exit status 2 from tools/train.py, tools/test.py and demo/image_demo.py; images
that are merely unusual (grayscale, RGBA, 16-bit) just work. See docs/robustness.md."""
import hashlib
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pytest
import torch

from _tiny import (REPO, SEG_CONFIG, assert_user_error, run_tool, write_det_config,
                   write_seg_config)
from hybridvit.datasets.generators import make_mini_ade, make_mini_coco, make_mini_freihand

DEMO = 'demo/image_demo.py'
TRAIN = 'tools/train.py'


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def ade_src(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bad') / 'mini_ade')
    make_mini_ade(root, num_train=2, num_val=1, image_size=64, seed=4, quiet=True)
    return root


@pytest.fixture
def ade_root(tmp_path, ade_src):
    root = str(tmp_path / 'mini_ade')
    shutil.copytree(ade_src, root)
    return root


@pytest.fixture(scope='module')
def coco_src(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('bad') / 'mini_coco')
    make_mini_coco(root, num_train=2, num_val=1, image_size=96, seed=4, quiet=True)
    return root


@pytest.fixture
def coco_root(tmp_path, coco_src):
    root = str(tmp_path / 'mini_coco')
    shutil.copytree(coco_src, root)
    return root + '/'


def _train_images(ade_root):
    folder = osp.join(ade_root, 'images', 'training')
    return sorted(osp.join(folder, name) for name in os.listdir(folder))


def _photo(h=80, w=96, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


# ----------------------------------------------------------------------------------- the demo
@pytest.mark.parametrize('kind,needle', [
    ('garbage', 'cannot decode image'),
    ('empty', 'empty'),
    pytest.param('truncated', 'truncated', marks=pytest.mark.slow),
])
def test_demo_unreadable_image(tmp_path, kind, needle):
    path = str(tmp_path / 'photo.jpg')
    if kind == 'garbage':
        data = b'this is not a JPEG' * 20
    elif kind == 'empty':
        data = b''
    else:
        ok, buf = cv2.imencode('.jpg', _photo())
        data = buf.tobytes()[:len(buf) // 2]
    with open(path, 'wb') as f:
        f.write(data)
    proc = run_tool([DEMO, path, SEG_CONFIG, '--out-file', str(tmp_path / 'out.png')])
    assert_user_error(proc, path, needle)
    assert not osp.exists(tmp_path / 'out.png')


def test_demo_image_smaller_than_stride(tmp_path):
    path = str(tmp_path / 'tiny.png')
    cv2.imwrite(path, _photo(16, 20))
    proc = run_tool([DEMO, path, SEG_CONFIG, '--out-file', str(tmp_path / 'out.png')])
    assert_user_error(proc, path, '20x16', '32x32')


def test_demo_16bit_grayscale_works(tmp_path):
    path = str(tmp_path / 'gray16.png')
    cv2.imwrite(path, (np.linspace(0, 65535, 64 * 72).reshape(64, 72)).astype(np.uint16))
    out = str(tmp_path / 'out.png')
    proc = run_tool([DEMO, path, SEG_CONFIG, '--out-file', out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    vis = cv2.imread(out)  # the picture (with a legend beside it) was written
    assert vis is not None and vis.shape[0] >= 64 and 'seg result' in proc.stdout


def _unusual_images(folder):
    """The same photo as 8-bit BGR (reference), grayscale, BGRA and 16-bit BGR / gray PNGs."""
    bgr = _photo(72, 88, seed=3)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    variants = dict(
        gray=(gray, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)),
        bgra=(np.dstack([bgr, np.full(bgr.shape[:2], 128, np.uint8)]), bgr),
        bgr16=(bgr.astype(np.uint16) * 257, bgr),
        gray16=(gray.astype(np.uint16) * 257, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)),
    )
    paths = {}
    for name, (img, expected) in variants.items():
        path = osp.join(folder, f'{name}.png')
        assert cv2.imwrite(path, img)
        paths[name] = (path, expected)
    return paths


def test_inference_accepts_gray_rgba_16bit(tmp_path):
    from hybridvit.apis import inference_model, init_model
    from hybridvit.utils.image_io import read_image_bgr
    model = init_model(SEG_CONFIG, None, device='cpu', cfg_options=dict(
        model=dict(neck=dict(out_channels=32),
                   decode_head=dict(in_channels=[32] * 4, channels=32))))
    for name, (path, expected) in _unusual_images(str(tmp_path)).items():
        img = read_image_bgr(path)
        assert img.dtype == np.uint8 and img.shape == (72, 88, 3), name
        np.testing.assert_allclose(img.astype(int), expected.astype(int), atol=1, err_msg=name)
        result = inference_model(model, path)
        assert tuple(result.pred_sem_seg.data.shape[-2:]) == (72, 88), name


def test_seg_pipeline_trains_on_gray_rgba_16bit(tmp_path, ade_src):
    """mmcv's LoadImageFromFile (color_type='color') turns them into 8-bit BGR; a training step
    on a batch of them gives a finite loss."""
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS, MODELS
    init_default_scope('mmseg')
    import hybridvit.models  # noqa: F401

    root = str(tmp_path / 'unusual')
    img_dir, ann_dir = osp.join(root, 'img'), osp.join(root, 'ann')
    os.makedirs(ann_dir)
    variants = _unusual_images(_mkdir(img_dir))
    label = cv2.imread(osp.join(ade_src, 'annotations', 'training', 'ADE_train_00000000.png'),
                       cv2.IMREAD_UNCHANGED)
    for name in variants:
        cv2.imwrite(osp.join(ann_dir, f'{name}.png'), cv2.resize(label, (88, 72),
                                                                   interpolation=cv2.INTER_NEAREST))
    cfg = Config.fromfile(write_seg_config(tmp_path, root))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(data_prefix=dict(img_path='img', seg_map_path='ann'), img_suffix='.png')
    dataset = DATASETS.build(ds_cfg)
    assert len(dataset) == 4
    samples = [dataset[i] for i in range(4)]
    for sample in samples:
        # RandomResize may scale below the 64x64 crop; the data preprocessor pads
        assert sample['inputs'].shape[0] == 3 and sample['inputs'].dtype == torch.uint8
        assert max(sample['inputs'].shape[1:]) <= 64
    loaded = {osp.splitext(osp.basename(dataset.get_data_info(i)['img_path']))[0]: i
              for i in range(4)}
    load = dataset.pipeline.transforms[0]
    for name, (path, expected) in variants.items():
        img = load(dict(img_path=path))['img']
        assert img.dtype == np.uint8 and img.shape == (72, 88, 3), name
        np.testing.assert_allclose(img.astype(int), expected.astype(int), atol=1, err_msg=name)
    assert set(loaded) == set(variants)

    model = MODELS.build(cfg.model)
    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    losses = model.train_step(pseudo_collate(samples), optim)
    assert all(bool(torch.isfinite(v).all()) for v in losses.values())


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    return path


# ------------------------------------------------------------------------------ checkpoints
@pytest.fixture(scope='module')
def foreign_checkpoint(tmp_path_factory):
    """A checkpoint of another architecture (Semantic FPN + FastViT-SA12, 150 classes)."""
    from hybridvit.apis import init_model
    model = init_model(osp.join(REPO, 'configs', 'seg', 'fpn_fastvit-sa12_8xb4-40k_ade20k-512x512.py'))
    path = str(tmp_path_factory.mktemp('ckpt') / 'sa12_fpn.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def test_test_tool_rejects_checkpoint_of_other_arch(tmp_path, ade_root, foreign_checkpoint):
    config = write_seg_config(tmp_path, ade_root)
    before = _sha256(foreign_checkpoint)
    proc = run_tool(['tools/test.py', config, foreign_checkpoint, '--work-dir',
                     str(tmp_path / 'work')])
    line = assert_user_error(proc, foreign_checkpoint)
    # lists the mismatched keys / shapes (the SA12 stage-4 attention + 150-class head)
    assert 'shape mismatch' in line and 'backbone.stages.' in line
    assert _sha256(foreign_checkpoint) == before


@pytest.mark.slow  # the tools/test.py variant above covers the default suite
def test_demo_rejects_checkpoint_of_other_arch(tmp_path, foreign_checkpoint):
    path = str(tmp_path / 'photo.png')
    cv2.imwrite(path, _photo())
    before = _sha256(foreign_checkpoint)
    proc = run_tool([DEMO, path, SEG_CONFIG, foreign_checkpoint,
                     '--out-file', str(tmp_path / 'out.png')])
    line = assert_user_error(proc, foreign_checkpoint)
    assert 'shape mismatch' in line and 'backbone.stages.' in line
    assert _sha256(foreign_checkpoint) == before


@pytest.mark.slow
def test_truncated_checkpoint(tmp_path, ade_root, foreign_checkpoint):
    path = str(tmp_path / 'truncated.pth')
    with open(foreign_checkpoint, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 3])
    before = _sha256(path)
    config = write_seg_config(tmp_path, ade_root)
    proc = run_tool(['tools/test.py', config, path, '--work-dir', str(tmp_path / 'work')])
    assert_user_error(proc, path, 'truncated')
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                     f'load_from={path}'])
    assert_user_error(proc, path, 'truncated')
    assert _sha256(path) == before


class _RunsCode:
    """Unpickles to ``os.getcwd()``: any callable a file names would run the same way."""

    def __reduce__(self):
        return (os.getcwd, ())


def _unsafe_checkpoint(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'payload': _RunsCode()}, path)
    return path


def test_test_tool_names_its_trust_option_for_an_unsafe_checkpoint(tmp_path, ade_root):
    """The library refuses the file naming hybridvit.compat.trust_checkpoint(); the tool's one
    line names its own option instead."""
    path = _unsafe_checkpoint(tmp_path)
    config = write_seg_config(tmp_path, ade_root)
    proc = run_tool(['tools/test.py', config, path, '--work-dir', str(tmp_path / 'work')])
    line = assert_user_error(proc, f'refusing to unpickle checkpoint {path}: ', 'getcwd')
    assert line.endswith('If you trust this file, pass --trust-checkpoint'), line
    assert 'hybridvit.compat' not in line


@pytest.mark.slow  # builds the runner: the tools/test.py variant above covers the default suite
def test_train_tool_names_its_trust_option_for_an_unsafe_checkpoint(tmp_path, ade_root):
    path = _unsafe_checkpoint(tmp_path)
    config = write_seg_config(tmp_path, ade_root)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                     f'load_from={path}'])
    line = assert_user_error(proc, f'refusing to unpickle checkpoint {path}: ', 'getcwd')
    assert line.endswith(f'If you trust this file, pass --trust-checkpoint {path}'), line


# -------------------------------------------------------------------- configs and datasets
def test_unknown_backbone_arch(tmp_path, ade_root):
    config = write_seg_config(tmp_path, ade_root)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work'),
                     '--cfg-options', 'model.backbone.arch=t99'])
    assert_user_error(proc, "'t99'", 'expected one of', 't8')


@pytest.mark.parametrize('kind,needle', [
    ('garbage', 'failed to load image'),
    pytest.param('truncated', 'failed to load image', marks=pytest.mark.slow),
    pytest.param('missing_label', 'No such file or directory', marks=pytest.mark.slow),
])
def test_train_bad_seg_sample(tmp_path, ade_root, kind, needle):
    """Every training image is broken, so the first batch meets one whatever the shuffle."""
    bad = []
    for path in _train_images(ade_root):
        if kind == 'missing_label':
            path = path.replace('images', 'annotations').replace('.jpg', '.png')
            os.remove(path)
        else:
            with open(path, 'rb') as f:
                data = f.read()
            with open(path, 'wb') as f:
                f.write(b'garbage' * 30 if kind == 'garbage' else data[:len(data) // 2])
        bad.append(path)
    config = write_seg_config(tmp_path, ade_root, max_iters=2)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work')])
    line = assert_user_error(proc, needle)
    assert any(path in line for path in bad), line


def test_train_seg_label_out_of_range(tmp_path, ade_root):
    """torch's cross-entropy rejects the class id (mmseg does not check); the error says what
    was expected and points at tools/misc/check_dataset.py, which names the file."""
    label_dir = osp.join(ade_root, 'annotations', 'training')
    bad = osp.join(label_dir, sorted(os.listdir(label_dir))[0])
    label = cv2.imread(bad, cv2.IMREAD_UNCHANGED)
    label[:, :] = 200  # every pixel: survives any crop (6 classes, reduce_zero_label -> 199)
    cv2.imwrite(bad, label)
    config = write_seg_config(tmp_path, ade_root, max_iters=2)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work')])
    assert_user_error(proc, 'class id 199', 'check_dataset.py')

    proc = run_tool(['tools/misc/check_dataset.py', config])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert bad in proc.stdout and '199' in proc.stdout
    assert proc.stdout.count('label values') == 1  # only the one bad file is listed


def test_train_malformed_coco_json(tmp_path, coco_root):
    ann = osp.join(coco_root, 'annotations', 'instances_train2017.json')
    with open(ann) as f:
        text = f.read()
    with open(ann, 'w') as f:
        f.write(text[:len(text) // 2])
    config = write_det_config(tmp_path, coco_root)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work')])
    assert_user_error(proc, ann, 'JSONDecodeError', 'train_dataloader')


@pytest.mark.slow
@pytest.mark.parametrize('kind,needle', [
    ('list', 'not supported'),
    ('no_images', 'no samples'),
    ('missing_image', 'No such file or directory'),
])
def test_train_bad_coco(tmp_path, coco_root, kind, needle):
    ann = osp.join(coco_root, 'annotations', 'instances_train2017.json')
    with open(ann) as f:
        coco = json.load(f)
    if kind == 'list':
        coco = [coco]
    elif kind == 'no_images':
        coco['images'] = []
    else:
        for image in coco['images']:
            os.remove(osp.join(coco_root, 'train2017', image['file_name']))
    with open(ann, 'w') as f:
        json.dump(coco, f)
    config = write_det_config(tmp_path, coco_root)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work')])
    line = assert_user_error(proc, needle)
    assert (ann in line) if kind != 'missing_image' else ('train2017' in line)


FREIHAND_CONFIG = """_base_ = {base!r}
data_root = {root!r}
model = dict(head=dict(faces={root!r} + '/mesh_faces.json'))
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, num_val=1))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
train_cfg = dict(max_iters=1)
"""


def test_train_freihand_json_wrong_length(tmp_path):
    root = str(tmp_path / 'mini_freihand')
    make_mini_freihand(root, num_train=4, num_eval=1, image_size=64, num_versions=1,
                       verbose=False)
    xyz = osp.join(root, 'training_xyz.json')
    with open(xyz) as f:
        joints = json.load(f)
    with open(xyz, 'w') as f:
        json.dump(joints[:3], f)
    config = str(tmp_path / 'hand.py')
    with open(config, 'w') as f:
        f.write(FREIHAND_CONFIG.format(
            base=osp.join(REPO, 'configs', 'hand', 'hand-mesh_fastvit-t8_mini-freihand-128.py'),
            root=root))
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work')])
    assert_user_error(proc, xyz, 'has 3 entries, expected 4')


BUGGY_MODEL = """
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine', '_buggy_model'],
                      allow_failed_imports=False)
model = dict(backbone=dict(type='hybridvit.BuggyFastViT'))
"""


def test_bug_in_model_forward_shows_traceback(tmp_path, ade_root):
    """A KeyError raised inside a model's forward is a programming error, not a user mistake:
    tools/train.py lets it through with its traceback (exit status 1, not the one-line exit 2)."""
    config = write_seg_config(tmp_path, ade_root, max_iters=1, extra=BUGGY_MODEL)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work')])
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    assert 'Traceback (most recent call last)' in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1] == "KeyError: 'stage4'", proc.stderr[-3000:]
    assert '_buggy_model.py' in proc.stderr and 'train.py: error:' not in proc.stderr


@pytest.mark.parametrize('option,needles', [
    # a type= that no registry holds (mmengine: KeyError "... is not in the ... registry")
    ('model.decode_head.type=FPNHeadd', ("type='FPNHeadd'", 'registry', 'custom_imports')),
    # a key the class does not accept (Python: TypeError "unexpected keyword argument")
    ('model.backbone.archh=t8', ("unexpected keyword argument 'archh'", 'FastViT')),
])
def test_wrong_config_type_or_key_is_one_line(tmp_path, ade_root, option, needles):
    config = write_seg_config(tmp_path, ade_root, max_iters=1)
    proc = run_tool([TRAIN, config, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                     option])
    assert_user_error(proc, 'config: ', *needles)


def test_only_user_errors_are_one_line():
    """run_cli's classification: our error types and recognised upstream mistakes give a line,
    any other ValueError / KeyError / TypeError (a bug) gives None (the traceback shows)."""
    from mmengine.registry import Registry

    from hybridvit.models.utils.checkpoint import CheckpointMismatchError
    from hybridvit.utils.cli import UserError, user_error_message

    assert user_error_message(UserError('data_root: /x does not exist')) == \
        'data_root: /x does not exist'
    assert user_error_message(CheckpointMismatchError('a.pth: shape mismatch')) == \
        'a.pth: shape mismatch'
    assert user_error_message(FileNotFoundError(2, 'No such file or directory', '/d/a.png')) \
        == "[Errno 2] No such file or directory: '/d/a.png'"
    for bug in (ValueError('bad value'), KeyError('stage4'), TypeError('unsupported operand'),
                IndexError('list index out of range'), AttributeError('x'),
                RuntimeError('shape mismatch')):
        assert user_error_message(bug) is None, bug

    registry = Registry('toy', scope='toyscope')

    def helper(width):
        return width

    @registry.register_module()
    class Toy:
        def __init__(self, depth=1):
            if depth == -1:
                {}['depth']  # a bug inside __init__: a KeyError that is not about the config
            if depth == 99:
                helper(depth=depth)  # a bug inside __init__: the same TypeError text as below
            self.depth = depth

    def caught(cfg):
        with pytest.raises(Exception) as info:
            registry.build(cfg)
        return user_error_message(info.value)

    assert caught(dict(type='Toyy')) == (
        "config: type='Toyy' is not in the toyscope::toy registry (misspelt, another "
        "library's scope, or its module is missing from custom_imports)")
    message = caught(dict(type='Toy', dept=2))
    assert message.startswith('config: ') and "unexpected keyword argument 'dept'" in message
    assert caught(dict(type='Toy', depth=-1)) is None  # KeyError raised inside __init__
    assert caught(dict(type='Toy', depth=99)) is None  # TypeError raised inside __init__
    assert isinstance(registry.build(dict(type='Toy', depth=3)), Toy)


def test_known_upstream_errors_are_one_line():
    """The mapping run_cli applies, including errors re-raised from DataLoader workers (whose
    message embeds the worker's traceback)."""
    from torch._utils import ExceptionWrapper

    from hybridvit.utils.cli import known_upstream_error
    try:
        raise AssertionError('failed to load image: /data/x.jpg')
    except AssertionError:
        wrapped = ExceptionWrapper(where='in DataLoader worker process 0')
    with pytest.raises(AssertionError) as info:
        wrapped.reraise()
    assert 'Traceback' in str(info.value)
    message = known_upstream_error(info.value)
    assert message.startswith('failed to load image: /data/x.jpg (corrupt')
    assert '\n' not in message and 'Traceback' not in message
    assert 'class id 199' in known_upstream_error(IndexError('Target 199 is out of bounds.'))
    assert known_upstream_error(AssertionError('something else')) is None
    assert known_upstream_error(IndexError('list index out of range')) is None


def test_test_tool_tta_needs_the_config_entries(tmp_path, ade_root):
    """--tta on a config without tta_model (mmseg's runtime base defines one): one line naming
    the config."""
    config = write_seg_config(tmp_path, ade_root, extra='tta_model = None\n')
    path = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict={}), path)
    proc = run_tool(['tools/test.py', config, path, '--tta', '--work-dir', str(tmp_path / 'w')])
    assert_user_error(proc, f'--tta: config {config} defines no tta_model')
