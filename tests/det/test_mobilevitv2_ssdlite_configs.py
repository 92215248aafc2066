"""SSDLite + MobileViTv2 configs (configs/det/ssdlite_mobilevitv2-*): each builds, taps L4 / L5
with the channels the neck expects, runs one training step and one ``predict`` at 320x320."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs/det/ssdlite_mobilevitv2-*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.basename(p)[:-3])
def test_ssdlite_mobilevitv2_trains_and_predicts(path):
    import hybridvit.models  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.type == 'hybridvit.MobileViTv2'
    width = backbone.arch.replace('.', '').ljust(3, '0')
    assert f'mobilevitv2_{width}.cvnets_in1k' in backbone.init_cfg.checkpoint
    pre = cfg.model.data_preprocessor
    assert list(pre.mean) == [0.0] * 3 and list(pre.std) == [255.0] * 3 and pre.bgr_to_rgb
    backbone.init_cfg = None  # never download in tests
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    with torch.no_grad():
        feats = model.backbone(torch.zeros(1, 3, 320, 320))
    assert [f.shape[1] for f in feats] == list(cfg.model.neck.in_channels)
    assert [320 // f.shape[-1] for f in feats] == [16, 32]

    def batch():
        samples = []
        for _ in range(2):  # BatchNorm on the 1x1 last level needs more than one value
            s = DetDataSample(metainfo=dict(img_shape=(320, 320), ori_shape=(320, 320),
                                            scale_factor=(1.0, 1.0), img_id=0))
            s.gt_instances = InstanceData(bboxes=torch.tensor([[40., 50., 200., 260.]]),
                                          labels=torch.tensor([3]))
            samples.append(s)
        gen = torch.Generator().manual_seed(0)
        imgs = [torch.randint(0, 256, (3, 320, 320), generator=gen, dtype=torch.uint8)
                for _ in samples]
        return dict(inputs=imgs, data_samples=samples)

    model.train()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1e-3))
    losses = model.train_step(batch(), optim)
    assert set(losses) == {'loss', 'loss_cls', 'loss_bbox'}
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch(), False)
        pred = model.predict(data['inputs'], data['data_samples'])[0].pred_instances
    assert len(pred) <= cfg.model.test_cfg.max_per_img
    assert pred.bboxes.shape == (len(pred), 4)
