# DeepLabv3 + MobileViTv3-0.5 (OS16, ASPP 512 ch, rates 6/12/18) on PASCAL VOC 2012 + SBD aug,
# 512x512, the MobileViTv2 / ml-cvnets recipe. Published: 76.48 mIoU (micronDLA/MobileViTv3
# README, VOC+COCO). ImageNet weights: mobilevitv3_0_5_0/checkpoint_ema_best.pt from
# https://github.com/micronDLA/MobileViTv3/releases/tag/v1.0.0 (unzip under checkpoints/).
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_voc12aug-512x512.py'
model = dict(
    backbone=dict(
        type='hybridvit.MobileViTv3',
        arch='0.5',
        init_cfg=dict(checkpoint='checkpoints/mobilevitv3_0_5_0/checkpoint_ema_best.pt')),
    decode_head=dict(in_channels=256),
    auxiliary_head=dict(in_channels=192, channels=128))
