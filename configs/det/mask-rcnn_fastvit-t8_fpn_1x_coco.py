# Mask R-CNN + FPN + FastViT-T8, COCO 2017, 1x. Expected: not reported.
_base_ = '../_base_/det/mask-rcnn_fastvit_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='t8',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_t8.pth.tar')),
    neck=dict(in_channels=[48, 96, 192, 384]))
