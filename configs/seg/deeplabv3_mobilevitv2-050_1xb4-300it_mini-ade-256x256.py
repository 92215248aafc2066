# Mini run: DeepLabv3 + MobileViTv2-0.5 trained FROM SCRATCH on the generated mini ADE20K-layout
# set (data/mini_ade: tools/dataset_converters/make_mini_datasets.py ade), one CPU process,
# batch 4, 256x256, 300 iterations: the same data and schedule as the FastViT-T8 quick start.
# NOTE: to fit 2 CPU cores, output stride 16 and a 256-channel ASPP / 128-channel auxiliary head
# instead of cvnets' OS8 / 512 channels, AdamW 2e-3 (from scratch) and no EMA.
_base_ = './deeplabv3_mobilevitv2-050_4xb4-152k_ade20k-512x512.py'

crop_size = (256, 256)
data_root = 'data/mini_ade'
metainfo = dict(
    classes=('background', 'striped_ellipse', 'checkered_box', 'dotted_triangle', 'ringed_star',
             'speckled_cross'),
    palette=[[120, 120, 120], [230, 90, 30], [40, 110, 230], [60, 200, 80], [245, 215, 50],
             [160, 60, 210]])

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(output_stride=16, init_cfg=None),  # no pretrained weights offline
    decode_head=dict(channels=256, dilations=(1, 6, 12, 18), num_classes=6, dropout_ratio=0.0),
    auxiliary_head=dict(num_classes=6, dropout_ratio=0.0))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
mini_ade = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    reduce_zero_label=True,
    img_suffix='.jpg',
    seg_map_suffix='.png')
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(
        _delete_=True,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline, **mini_ade))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(
        _delete_=True,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline, **mini_ade))
test_dataloader = val_dataloader

max_iters = 300
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='PolyLR', power=0.9, eta_min=1e-5, by_epoch=False, begin=20, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
custom_hooks = []
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2,
                    save_last=True),
    visualization=dict(type='SegVisualizationHook', draw=False))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False)
