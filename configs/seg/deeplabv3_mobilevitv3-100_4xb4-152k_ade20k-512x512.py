# DeepLabv3 + MobileViTv3-1.0 (OS8, ASPP 512 ch, rates 12/24/36) on ADE20K 512x512, the
# MobileViTv2 / ml-cvnets recipe the authors' MobileViTv3-v2 config follows. Published: 39.13 mIoU
# (micronDLA/MobileViTv3 README). ImageNet weights: mobilevitv3_1_0_0/checkpoint_ema_best.pt from
# https://github.com/micronDLA/MobileViTv3/releases/tag/v1.0.0 (unzip under checkpoints/).
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='hybridvit.MobileViTv3',
        arch='1.0',
        init_cfg=dict(checkpoint='checkpoints/mobilevitv3_1_0_0/checkpoint_ema_best.pt')),
    decode_head=dict(in_channels=512),
    auxiliary_head=dict(in_channels=384, channels=128))
