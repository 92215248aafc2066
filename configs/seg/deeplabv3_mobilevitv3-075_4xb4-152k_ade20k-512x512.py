# DeepLabv3 + MobileViTv3-0.75 (OS8, ASPP 512 ch, rates 12/24/36) on ADE20K 512x512, the
# MobileViTv2 / ml-cvnets recipe the authors' MobileViTv3-v2 config follows. Published: 36.43 mIoU
# (micronDLA/MobileViTv3 README). ImageNet weights: mobilevitv3_0_7_5/checkpoint_ema_best.pt from
# https://github.com/micronDLA/MobileViTv3/releases/tag/v1.0.0 (unzip under checkpoints/).
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_ade20k-512x512.py'
model = dict(
    backbone=dict(
        type='hybridvit.MobileViTv3',
        arch='0.75',
        init_cfg=dict(checkpoint='checkpoints/mobilevitv3_0_7_5/checkpoint_ema_best.pt')),
    decode_head=dict(in_channels=384),
    auxiliary_head=dict(in_channels=288, channels=128))
