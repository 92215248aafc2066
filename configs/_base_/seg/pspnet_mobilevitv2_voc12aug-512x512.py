# PSPNet + MobileViTv2 on PASCAL VOC 2012 + SBD aug 512x512, ml-cvnets' recipe: output stride 16.
# Variant files set `arch`, the checkpoint and the head in_channels.
_base_ = [
    './pspnet_mobilevitv2.py',
    './schedule_mobilevitv2_voc12aug-512x512.py',
]
model = dict(
    backbone=dict(output_stride=16),
    decode_head=dict(num_classes=21),
    auxiliary_head=dict(num_classes=21))
