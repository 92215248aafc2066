# Mask R-CNN + FPN with a MobileViT v1 backbone (stride 4..32 maps from stages L2..L5),
# COCO 2017, 1x schedule, AdamW lr 2e-4 wd 1e-4 (same protocol as the FastViT configs).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

model = dict(
    # MobileViT was pretrained on RGB in [0, 1]: mean 0, std 255 on 0-255 pixels.
    data_preprocessor=dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='hybridvit.MobileViT',
        arch='s',
        out_indices=(1, 2, 3, 4),
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    neck=dict(in_channels=[64, 96, 128, 640]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)
auto_scale_lr = dict(enable=False, base_batch_size=16)
