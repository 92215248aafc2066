# Semantic FPN + FastViT-SA36, ADE20K 512x512, 40k iters x 32 images (paper protocol).
# Expected mIoU: not reported (PoolFormer-S36: 42.0).
_base_ = '../_base_/seg/fpn_fastvit_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='sa36',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa36.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
