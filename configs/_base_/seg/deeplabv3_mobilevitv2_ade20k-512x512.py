# DeepLabv3 + MobileViTv2 on ADE20K 512x512, ml-cvnets' recipe: output stride 8, ASPP rates 12/24/36.
# Variant files set `arch`, the checkpoint and the head in_channels.
_base_ = [
    './deeplabv3_mobilevitv2.py',
    './schedule_mobilevitv2_ade20k-512x512.py',
]
model = dict(
    backbone=dict(output_stride=8),
    decode_head=dict(dilations=(1, 12, 24, 36), num_classes=150),
    auxiliary_head=dict(num_classes=150))
