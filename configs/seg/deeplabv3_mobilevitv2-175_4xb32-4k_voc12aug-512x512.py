# DeepLabv3 + MobileViTv2-1.75 (OS16, ASPP 512 ch, rates 6/12/18) on PASCAL VOC 2012 + SBD aug,
# 512x512, ml-cvnets' recipe. Published: not reported.
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_voc12aug-512x512.py'
model = dict(
    backbone=dict(
        arch='1.75',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_175.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=896),
    auxiliary_head=dict(in_channels=672, channels=168))
