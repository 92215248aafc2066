"""Task adapters (hybridvit.apis.tasks): one object per task builds, exports, compares, draws."""
import os.path as osp
import warnings

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from hybridvit.apis import TASKS, Task, get_task, init_model
from hybridvit.apis.tasks import DetTask, ExportPart, HandTask, SegTask, register_task
from hybridvit.deploy import output_names
from hybridvit.models.utils import reparameterize_model
from hybridvit.utils.cli import UserError
from hybridvit.utils.outputs import (compare_outputs, flatten_outputs, flatten_tensors,
                                     max_relative_error)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MINI = {
    'seg': 'configs/seg/fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py',
    'det': 'configs/det/mask-rcnn_fastvit-t8_fpn_1xb4-8e_mini-coco-320.py',
    'hand': 'configs/hand/hand-mesh_fastvit-t8_mini-freihand-128.py',
}
CFG_OPTIONS = {'hand': {'model.head.faces': None}}


def _init(task_name):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return init_model(osp.join(ROOT, MINI[task_name]), None,
                          cfg_options=CFG_OPTIONS.get(task_name))


def _randomise_bn(model):
    """Non-trivial BatchNorm statistics, so that a wrong fold would show."""
    gen = torch.Generator().manual_seed(1)
    for bn in [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]:
        bn.running_mean.normal_(0.0, 0.1, generator=gen)
        bn.running_var.uniform_(0.5, 1.5, generator=gen)
    return model


# ------------------------------------------------------------------------ registry
def test_every_scope_has_one_adapter_found_by_config_model_scope_or_name():
    assert {scope: type(t) for scope, t in TASKS.items()} == {
        'mmseg': SegTask, 'mmdet': DetTask, 'hybridvit': HandTask}
    for name, config in MINI.items():
        cfg = Config.fromfile(osp.join(ROOT, config))
        task = get_task(cfg)
        assert task.name == name and get_task(name) is task
        assert get_task(task.scope) is task and get_task(task) is task


def test_unknown_scope_is_a_user_error_naming_it():
    with pytest.raises(UserError, match="default_scope='mmpose'"):
        get_task(Config(dict(default_scope='mmpose')))
    with pytest.raises(UserError, match="'mmpose'"):
        get_task('mmpose')


def test_adding_a_task_is_one_class():
    @register_task
    class ToyTask(Task):
        name, scope = 'toy', 'toyscope'

        def part_functions(self):
            return dict(super().part_functions(), model=(lambda m, x: {'y': m(x) * 2}, '', None))

    try:
        task = get_task(Config(dict(default_scope='toyscope')))
        model = torch.nn.Conv2d(3, 4, 1)
        part = task.exportable_part(model, 'model')
        assert isinstance(part, ExportPart) and part.prefix == '' and part.not_exported is None
        x = torch.randn(1, 3, 8, 8)
        assert output_names(part.module, x, part.prefix) == ['y']
        assert torch.equal(task.comparable_outputs(model, x)[0], model(x) * 2)
        with pytest.raises(ValueError, match='toy'):
            register_task(type('Again', (Task, ), dict(name='toy', scope='other')))
    finally:
        TASKS.pop('toyscope', None)


# ------------------------------------------------------------------------ build / export / compare
@pytest.mark.parametrize('name, part, names, shape', [
    ('seg', 'model', ['seg_logits'], (64, 64)),
    ('det', 'backbone', ['feat0', 'feat1', 'feat2', 'feat3'], (64, 96)),
    ('hand', 'model', ['cam', 'global_rot', 'joints', 'keypoints_2d_norm', 'keypoints_depth',
                       'keypoints_heatmap', 'keypoints_uv', 'verts'], (64, 64)),
])
def test_adapter_builds_mini_config_and_fused_outputs_match(name, part, names, shape):
    model = _randomise_bn(_init(name))
    task = get_task(model)
    assert task.name == name and {'backbone', 'model'} <= set(task.parts)
    fused = reparameterize_model(model)
    x = torch.randn(1, 3, *shape)
    ref, new = task.comparable_outputs(model, x), task.comparable_outputs(fused, x)
    assert len(ref) == len(new) >= len(names)
    assert max_relative_error(ref, new) < 1e-4
    exported = task.exportable_part(fused, part)
    assert output_names(exported.module, x, exported.prefix) == names
    assert max_relative_error(list(task.exportable_part(model, part).module(x)),
                              list(exported.module(x))) < 1e-4
    backbone = task.exportable_part(fused, 'backbone')
    assert backbone.prefix == 'feat' and backbone.not_exported is None
    with pytest.raises(UserError, match="no exportable part 'whole'"):
        task.exportable_part(fused, 'whole')


def test_det_adapter_compares_features_and_rpn_outputs():
    model = _init('det')
    task = get_task(model)
    x = torch.randn(1, 3, 64, 96)
    outputs = task.comparable_outputs(model, x)
    # 5 FPN maps, then RPN class scores and box deltas per level
    assert len(outputs) == 5 + 2 * 5
    assert [tuple(t.shape[-2:]) for t in outputs[:5]] == [(16, 24), (8, 12), (4, 6), (2, 3),
                                                          (1, 2)]
    assert task.coreml_parts == ('backbone', )


def test_export_shapes_come_from_the_config_or_the_task():
    for name, shape in (('seg', (256, 256)), ('hand', (128, 128)), ('det', (800, 1216))):
        task = get_task(name)
        assert task.export_input_shape(Config.fromfile(osp.join(ROOT, MINI[name]))) == shape
    get_task('det').check_input_shape((64, 96))
    with pytest.raises(UserError, match='multiples of 32'):
        get_task('det').check_input_shape((64, 100))
    get_task('seg').check_input_shape((64, 100))
    with pytest.raises(UserError, match='at least 32'):
        get_task('seg').check_input_shape((16, 64))


# ------------------------------------------------------------------------ drawing
def test_seg_draw_colours_and_summarises_a_known_label_map():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    labels = np.zeros((4, 6), np.int64)
    labels[:, 3:] = 1
    sample = SegDataSample(pred_sem_seg=PixelData(data=torch.from_numpy(labels)[None]))
    img = np.full((4, 6, 3), 100, np.uint8)
    meta = dict(classes=('sky', 'road'), palette=[(200, 0, 0), (0, 0, 200)])
    vis, summary = get_task('seg').draw(img, sample, meta, opacity=0.5)
    assert summary == 'sky 50.0%, road 50.0%'
    # 50 % blend with the palette colour (RGB -> BGR): sky (200,0,0) -> B=50,G=50,R=150
    assert vis[0, 0].tolist() == [50, 50, 150] and vis[0, 5].tolist() == [150, 50, 50]


def test_det_draw_keeps_boxes_above_the_threshold():
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    inst = InstanceData(bboxes=torch.tensor([[2., 2., 20., 20.], [30., 22., 44., 30.]]),
                        labels=torch.tensor([0, 1]), scores=torch.tensor([0.9, 0.1]))
    sample = DetDataSample(pred_instances=inst)
    img = np.zeros((32, 48, 3), np.uint8)
    vis, summary = get_task('det').draw(img, sample, dict(classes=('a', 'b')), score_thr=0.3)
    assert summary == '1 detections >= 0.3'
    assert vis[2:21, 2:21].any() and not vis[22:31, 30:45].any()  # only the kept box


def test_test_time_drawing_uses_the_adapter_renderer(tmp_path):
    """tools/test.py --show-dir (DrawResultsHook) writes exactly what the demo draws."""
    from types import SimpleNamespace

    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from hybridvit.engine.draw_hook import DrawResultsHook
    img = (np.random.default_rng(0).random((8, 10, 3)) * 255).astype(np.uint8)
    path = str(tmp_path / 'photo.png')
    cv2.imwrite(path, img)
    labels = torch.zeros(1, 8, 10, dtype=torch.long)
    labels[:, 4:] = 2
    sample = SegDataSample(pred_sem_seg=PixelData(data=labels), metainfo=dict(img_path=path))
    meta = dict(classes=('a', 'b', 'c'), palette=[(10, 20, 30), (40, 50, 60), (70, 80, 90)])
    runner = SimpleNamespace(cfg=Config(dict(default_scope='mmseg')), test_loop=SimpleNamespace(
        dataloader=SimpleNamespace(dataset=SimpleNamespace(metainfo=meta))))
    hook = DrawResultsHook(str(tmp_path / 'show'), opacity=0.3)
    hook.before_test(runner)
    hook.after_test_iter(runner, 0, dict(inputs=[torch.zeros(3, 8, 10)]), [sample])
    expected, _ = get_task('seg').draw(img, sample, meta, opacity=0.3)
    written = cv2.imread(str(tmp_path / 'show' / 'photo.png'))
    assert hook.written == 1 and np.array_equal(written, expected)


# ------------------------------------------------------------------------ outputs
def test_flatten_outputs_order_and_names():
    a, b, c = torch.zeros(1), torch.ones(2), torch.full((3, ), 2.)
    pairs = flatten_outputs({'b': (a, b), 'a': c, 'meta': 'text'})
    assert [n for n, _ in pairs] == ['a', 'b.0', 'b.1']
    assert [t.numel() for t in flatten_tensors({'b': (a, b), 'a': c})] == [3, 1, 2]
    assert flatten_outputs(a) == [('', a)] and flatten_outputs(None) == []


def test_compare_outputs_known_values_and_mismatches():
    ref = [torch.tensor([2., -4.]), np.array([[1., 1.]])]
    new = [torch.tensor([2., -3.]), np.array([[1., 1.5]])]
    assert compare_outputs(ref, new) == dict(max_abs=1.0, max_rel=0.5)
    assert max_relative_error(ref, ref) == 0.0
    assert compare_outputs([torch.zeros(0)], [torch.zeros(0)]) == dict(max_abs=0.0, max_rel=0.0)
    with pytest.raises(ValueError, match='number of outputs'):
        compare_outputs(ref, new[:1])
    with pytest.raises(ValueError, match='shapes differ'):
        compare_outputs([torch.zeros(2)], [torch.zeros(3)])


def test_hand_test_pictures_are_drawn_on_the_network_crop(tmp_path):
    from types import SimpleNamespace

    from mmengine.structures import BaseDataElement

    from hybridvit.engine.draw_hook import DrawResultsHook
    crop = torch.full((3, 64, 64), 40, dtype=torch.uint8)  # (C, H, W) as the loader packs it
    sample = BaseDataElement(pred_keypoints_2d=torch.full((21, 2), 32.0))
    runner = SimpleNamespace(cfg=Config(dict(default_scope='hybridvit')), test_loop=SimpleNamespace(
        dataloader=SimpleNamespace(dataset=SimpleNamespace(metainfo={}))))
    hook = DrawResultsHook(str(tmp_path))
    hook.before_test(runner)
    hook.after_test_iter(runner, 3, dict(inputs=[crop]), [sample])
    written = cv2.imread(str(tmp_path / '00003_00.png'))
    expected, _ = get_task('hand').draw(np.full((64, 64, 3), 40, np.uint8), sample, {})
    assert written.shape == (384, 384, 3) and np.array_equal(written, expected)
    assert (written != 40).any()  # the joints were drawn
