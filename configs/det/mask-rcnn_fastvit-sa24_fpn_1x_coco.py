# Mask R-CNN + FPN + FastViT-SA24, COCO 2017, 1x. Expected: 42.0 box / 38.0 mask AP (secondary source; PoolFormer-S24: 40.1 / 37.0).
_base_ = '../_base_/det/mask-rcnn_fastvit_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='sa24',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa24.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
