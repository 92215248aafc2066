# DeepLabv3 + MobileViTv2-0.75 (OS8, ASPP 512 ch, rates 12/24/36) on ADE20K 512x512, ml-cvnets'
# recipe. Published: 34.7 mIoU (ml-cvnets model zoo).
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='0.75',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_075.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=384),
    auxiliary_head=dict(in_channels=288, channels=128))
