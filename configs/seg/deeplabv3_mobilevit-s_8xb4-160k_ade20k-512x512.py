# DeepLabv3 + MobileViT-S (OS16) on ADE20K 512x512, 160k iterations x 32 images.
_base_ = '../_base_/seg/deeplabv3_mobilevit_ade20k-512x512.py'
model = dict(
    backbone=dict(arch='s', init_cfg=dict(checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=160))
