# Semantic FPN + FastViT-MA36, ADE20K 512x512, 40k iters x 32 images (paper protocol).
# Expected mIoU: PoolFormer-M36 42.4 + 5.2 (paper text).
_base_ = '../_base_/seg/fpn_fastvit_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='ma36',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_ma36.pth.tar')),
    neck=dict(in_channels=[76, 152, 304, 608]))
