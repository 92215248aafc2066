# DeepLabv3 + MobileViTv3-S (OS16, ASPP 256 ch, rates 6/12/18) on VOC 2012 + SBD aug,
# 512x512: the MobileViT v1 recipe, which the authors' MobileViTv3-v1 config follows (AdamW 9e-4,
# wd 0.01, 500 warm-up iterations, cosine; they add COCO data and EMA). Published: 79.59 mIoU
# (micronDLA/MobileViTv3 README, VOC+COCO). ImageNet weights:
# mobilevitv3_S_e300_7930/checkpoint_ema_best.pt from
# https://github.com/micronDLA/MobileViTv3/releases/tag/v1.0.0 (unzip under checkpoints/).
_base_ = '../_base_/seg/deeplabv3_mobilevit_voc12aug-512x512.py'
model = dict(
    backbone=dict(
        type='hybridvit.MobileViTv3',
        arch='s',
        init_cfg=dict(checkpoint='checkpoints/mobilevitv3_S_e300_7930/checkpoint_ema_best.pt')),
    decode_head=dict(in_channels=320))
