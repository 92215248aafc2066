# SSDLite with a MobileViT v1 backbone, COCO 2017, 320x320 (MobileViT, arXiv 2110.02178, §4.2.1:
# SSDLite detection at 320x320; paper COCO mAP: MobileViT-XXS 19.9, XS 24.8, S 27.7).
# Inherits mmdet's SSDLite (separable SSD head + neck, SSDAnchorGenerator for 320x320,
# DeltaXYWHBBoxCoder, test_cfg nms_pre 1000 / score_thr 0.02 / NMS 0.45 / 200 per image) and its
# schedule, and swaps MobileNetV2 for MobileViT: the backbone's stride-16 map (L4) and its
# stride-32 map after the final 1x1 expansion (L5) feed the neck, which adds four depthwise
# levels (strides 64..320), as MobileNetV2's two taps do in mmdet.
# NOTE the paper trained with ml-cvnets' SSD recipe (its own anchors / extra-layer widths and
# optimiser; not verified here); the head, anchors and schedule here are mmdet's SSDLite ones.
# Variant files set `arch`, the two tapped channel counts and the ImageNet checkpoint.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

in_channels = (128, 640)  # MobileViT-S L4, L5 (+ final 1x1 expansion)
model = dict(
    # MobileViT was pretrained on RGB in [0, 1]: mean 0, std 255 on 0-255 pixels.
    data_preprocessor=dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='hybridvit.MobileViT',
        arch='s',
        out_indices=(3, 4),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    neck=dict(in_channels=in_channels,
              out_channels=(*in_channels, 512, 256, 256, 128)),
    # mmdet's SSDHead + the `loss_cls` attribute its 3.3 predict() reads (see the class)
    bbox_head=dict(type='hybridvit.SSDHead', in_channels=(*in_channels, 512, 256, 256, 128)))
