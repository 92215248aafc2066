# Mask R-CNN + FPN + FastViT-S12, COCO 2017, 1x. Expected: not reported.
_base_ = '../_base_/det/mask-rcnn_fastvit_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='s12',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_s12.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
