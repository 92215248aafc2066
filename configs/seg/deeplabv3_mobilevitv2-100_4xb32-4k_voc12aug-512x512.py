# DeepLabv3 + MobileViTv2-1.0 (OS16, ASPP 512 ch, rates 6/12/18) on PASCAL VOC 2012 + SBD aug,
# 512x512, ml-cvnets' recipe. Published: 78.94 mIoU (ml-cvnets zoo, VOC+SBD+COCO).
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_voc12aug-512x512.py'
model = dict(
    backbone=dict(
        arch='1.0',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_100.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=512),
    auxiliary_head=dict(in_channels=384, channels=128))
