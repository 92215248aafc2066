# SSDLite + MobileViTv2-2.0 (L4 / L5 taps: (768, 1024) channels), COCO 2017, 320x320, on the
# MobileViT SSDLite base (mmdet's SSDLite head, anchors and schedule). Published: 30.21 mAP
# (ml-cvnets model zoo, its own SSD recipe; not reproduced here).
_base_ = '../_base_/det/ssdlite_mobilevit_coco-320.py'
in_channels = (768, 1024)
model = dict(
    backbone=dict(
        type='hybridvit.MobileViTv2',
        arch='2.0',
        init_cfg=dict(checkpoint='https://huggingface.co/timm/mobilevitv2_200.cvnets_in1k/'
                      'resolve/main/model.safetensors')),
    neck=dict(in_channels=in_channels, out_channels=(*in_channels, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(*in_channels, 512, 256, 256, 128)))
