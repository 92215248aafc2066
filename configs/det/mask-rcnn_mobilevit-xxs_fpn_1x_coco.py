# Mask R-CNN + FPN + MobileViT-XXS (stages L2..L5, final 1x1 expansion in the last map),
# COCO 2017, 1x. No paper number for this pairing (MobileViT reported SSDLite detection).
_base_ = '../_base_/det/mask-rcnn_mobilevit_fpn_1x_coco.py'
model = dict(
    backbone=dict(
        arch='xxs',
        init_cfg=dict(checkpoint='https://huggingface.co/timm/mobilevit_xxs.cvnets_in1k/'
                      'resolve/main/model.safetensors')),
    neck=dict(in_channels=[24, 48, 64, 320]))
