# PSPNet + MobileViTv2-1.75 (OS8, pooling 1/2/3/6, 512 ch) on ADE20K 512x512, ml-cvnets' recipe.
# Published: 39.82 mIoU (ml-cvnets model zoo).
_base_ = '../_base_/seg/pspnet_mobilevitv2_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='1.75',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_175.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=896),
    auxiliary_head=dict(in_channels=672, channels=168))
