# Mini recipe: SSDLite + MobileViT-XXS trained FROM SCRATCH on the generated mini COCO set
# (data/mini_coco: 400 train / 80 val images, 320x320, 5 textured shape classes on real
# photographs; python tools/dataset_converters/make_mini_datasets.py coco --out data/).
# One process, CPU, batch 8, 30 epochs x 50 iterations. For trying training, evaluation and the
# whole-detector ONNX export end to end on a laptop, like
# mask-rcnn_fastvit-t8_fpn_1xb4-8e_mini-coco-320.py.
#
# NOTE what differs from the COCO config it inherits, on purpose: 5 classes, no pretrained
# weights (offline), a light augmentation (resize + flip: mmdet's Expand / MinIoURandomCrop /
# photometric jitter need far longer schedules), AdamW lr 1e-3 with gradient clipping, cosine.
_base_ = './ssdlite_mobilevit-xxs_8xb24-600e_coco-320.py'

data_root = 'data/mini_coco/'
image_size = (320, 320)
# == hybridvit.datasets.generators.COCO_METAINFO (tests check they agree)
metainfo = dict(
    classes=('striped_ellipse', 'checkered_box', 'dotted_triangle', 'ringed_star',
             'speckled_cross'),
    palette=[(230, 80, 30), (40, 90, 220), (60, 180, 60), (240, 220, 60), (150, 60, 200)])
num_classes = 5

model = dict(backbone=dict(init_cfg=None), bbox_head=dict(num_classes=num_classes))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 30
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_epochs - 1, eta_min=1e-5, begin=1,
         end=max_epochs, by_epoch=True, convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=2, save_last=True))
custom_hooks = []
auto_scale_lr = dict(enable=False, base_batch_size=8)
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False)
