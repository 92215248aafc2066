# Mask R-CNN + FPN + FastViT-SA36, COCO 2017, 1x. Expected: not reported (PoolFormer-S36: 41.0 / 37.7).
_base_ = '../_base_/det/mask-rcnn_fastvit_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='sa36',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa36.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
