# PSPNet + MobileViTv2-0.75 (OS16, pooling 1/2/3/6, 512 ch) on PASCAL VOC 2012 + SBD aug,
# 512x512, ml-cvnets' recipe. Published: not reported here.
_base_ = '../_base_/seg/pspnet_mobilevitv2_voc12aug-512x512.py'
model = dict(
    backbone=dict(
        arch='0.75',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_075.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=384),
    auxiliary_head=dict(in_channels=288, channels=128))
