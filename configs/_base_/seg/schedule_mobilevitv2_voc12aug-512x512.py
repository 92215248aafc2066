# ml-cvnets' PASCAL VOC recipe for MobileViTv2 DeepLabv3 / PSPNet (config/segmentation/pascal_voc/
# *_mobilevitv2.yaml): output stride 16, 4 GPUs x 32 images, AdamW wd 0.05 (none on norms /
# biases), 500 warm-up iterations from 5e-5, cosine 5e-4 -> 1e-6 over 50 epochs, gradient clipping
# 10, EMA of the weights (momentum 5e-4). Crop 512x512.
# NOTE: cvnets trains on VOC + SBD + COCO (use_coco_data); mmseg's VOC 2012 + SBD aug set
# (10582 images) is used here: 50 x 10582 / 128 = 4134 iterations.
_base_ = [
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
max_iters = 4134
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=500, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=1000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=1000))
custom_hooks = [dict(type='EMAHook', momentum=5e-4, priority='ABOVE_NORMAL')]
train_dataloader = dict(batch_size=32)
auto_scale_lr = dict(enable=False, base_batch_size=128)
