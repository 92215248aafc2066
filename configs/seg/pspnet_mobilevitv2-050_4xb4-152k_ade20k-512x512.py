# PSPNet + MobileViTv2-0.5 (OS8, pooling 1/2/3/6, 512 ch) on ADE20K 512x512, ml-cvnets' recipe.
# Published: 31.77 mIoU (ml-cvnets model zoo).
_base_ = '../_base_/seg/pspnet_mobilevitv2_ade20k-512x512.py'
model = dict(
    backbone=dict(
        arch='0.5',
        init_cfg=dict(
            checkpoint='https://huggingface.co/timm/mobilevitv2_050.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=256),
    auxiliary_head=dict(in_channels=192, channels=128))
