# DeepLabv3 + MobileViTv2-1.25 (OS8, ASPP 512 ch, rates 12/24/36) on ADE20K 512x512, ml-cvnets'
# recipe. Published: 38.42 mIoU (ml-cvnets model zoo).
_base_ = '../_base_/seg/deeplabv3_mobilevitv2_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='1.25',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_125.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=640),
    auxiliary_head=dict(in_channels=480, channels=128))
