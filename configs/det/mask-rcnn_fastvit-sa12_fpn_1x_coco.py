# Mask R-CNN + FPN + FastViT-SA12, COCO 2017, 1x. Expected: 38.9 box AP (secondary source; PoolFormer-S12: 37.3 / 34.6).
_base_ = '../_base_/det/mask-rcnn_fastvit_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='sa12',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa12.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
