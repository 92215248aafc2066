# SSDLite + MobileViT-XS (L4 / L5 taps: (80, 384) channels), COCO 2017, 320x320.
# Paper (arXiv 2110.02178): 24.8 mAP at 320x320 (not reproduced here).
_base_ = '../_base_/det/ssdlite_mobilevit_coco-320.py'
in_channels = (80, 384)
model = dict(
    backbone=dict(
        arch='xs',
        init_cfg=dict(checkpoint='https://huggingface.co/timm/mobilevit_xs.cvnets_in1k/'
                      'resolve/main/model.safetensors')),
    neck=dict(in_channels=in_channels, out_channels=(*in_channels, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(*in_channels, 512, 256, 256, 128)))
