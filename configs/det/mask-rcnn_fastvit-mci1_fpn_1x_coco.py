# Mask R-CNN + FPN + FastViT-MCi1 (MobileCLIP-S1 image encoder, arXiv 2311.17049),
# COCO 2017, 1x. Expected: not reported. The checkpoint is the MobileCLIP file (image tower
# under image_encoder.model., read by the FastViT converter).
_base_ = '../_base_/det/mask-rcnn_fastvit_fpn_1x_coco.py'
# MobileCLIP's image encoders were trained on RGB in [0, 1] (mean 0, std 255 on 0-255).
model = dict(
    data_preprocessor=dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0]),
    backbone=dict(
        arch='mci1',
        init_cfg=dict(
            checkpoint='https://docs-assets.developer.apple.com/ml-research/datasets/mobileclip/'
            'mobileclip_s1.pt')),
    neck=dict(in_channels=[64, 128, 256, 512]))
