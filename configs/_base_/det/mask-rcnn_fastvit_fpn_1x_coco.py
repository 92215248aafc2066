# Mask R-CNN + FPN with a FastViT backbone, COCO 2017, 1x schedule (12 epochs), the PoolFormer
# protocol that FastViT reused (arXiv 2303.14189 §4.3): AdamW lr 2e-4 wd 1e-4, 1333x800,
# 8 GPUs x 2 images. Variant files set `arch`, FPN `in_channels` and the ImageNet checkpoint.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

# FastViT was pretrained with ImageNet mean/std on 0-255 RGB (mmdet's defaults, bgr_to_rgb=True).
model = dict(
    backbone=dict(
        _delete_=True,
        type='hybridvit.FastViT',
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa12.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)
auto_scale_lr = dict(enable=False, base_batch_size=16)
