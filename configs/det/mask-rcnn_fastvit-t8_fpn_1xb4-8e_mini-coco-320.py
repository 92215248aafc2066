# Mini recipe: Mask R-CNN + FPN + FastViT-T8 trained FROM SCRATCH on the generated mini COCO set
# (data/mini_coco: 400 train / 80 val images, 320x320, 5 textured shape classes on real
# photographs; python tools/dataset_converters/make_mini_datasets.py coco --out data/).
# One process, CPU, batch 4, 8 epochs x 100 iterations (~30 min on 2 cores). See docs/detection.md.
#
# NOTE what differs from the paper config it inherits (mask-rcnn_fastvit-t8_fpn_1x_coco.py), on
# purpose, to fit a 2-core CPU: FPN / RoI heads 128 channels instead of 256 (4x cheaper neck and
# heads), fewer RPN anchors / RoIs sampled, fewer proposals, no drop path,
# AdamW lr 1e-3 (from scratch, small batch) with gradient clipping. Architecture otherwise equal.
# Warm start from the segmentation quick start's backbone (same object classes): the
# `_seg-init` variant of this file.
_base_ = './mask-rcnn_fastvit-t8_fpn_1x_coco.py'

data_root = 'data/mini_coco/'
image_size = (320, 320)
# == hybridvit.datasets.generators.COCO_METAINFO (tests check they agree)
metainfo = dict(
    classes=('striped_ellipse', 'checkered_box', 'dotted_triangle', 'ringed_star',
             'speckled_cross'),
    palette=[(230, 80, 30), (40, 90, 220), (60, 180, 60), (240, 220, 60), (150, 60, 200)])
num_classes = 5
neck_channels = 128

model = dict(
    backbone=dict(drop_path_rate=0.0, init_cfg=None),  # no pretrained weights offline
    neck=dict(out_channels=neck_channels),
    rpn_head=dict(in_channels=neck_channels, feat_channels=neck_channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=neck_channels),
        bbox_head=dict(in_channels=neck_channels, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=neck_channels),
        mask_head=dict(in_channels=neck_channels, conv_out_channels=neck_channels,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=4)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01),
                     clip_grad=dict(_delete_=True, max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5, begin=1,
         end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=4, max_keep_ckpts=2, save_last=True))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False)
