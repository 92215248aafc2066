# ml-cvnets' ADE20K recipe for MobileViTv2 DeepLabv3 / PSPNet (config/segmentation/ade20k/
# *_mobilevitv2.yaml): output stride 8, 4 GPUs x 4 images, SGD momentum 0.9, wd 1e-4 (none on
# norms / biases), cosine lr 0.02 -> 2e-4 over 120 epochs (120 x 20210 / 16 = 151575 iterations),
# gradient clipping 10, EMA of the weights (momentum 5e-4). Crop 512x512.
# NOTE: cvnets also uses random rotation (10 deg) and Gaussian noise; mmseg's ADE20K pipeline
# (random resize 0.5-2.0, crop, flip, photometric distortion) is kept.
_base_ = [
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
max_iters = 151575
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='CosineAnnealingLR', eta_min=2e-4, by_epoch=False, begin=0, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
custom_hooks = [dict(type='EMAHook', momentum=5e-4, priority='ABOVE_NORMAL')]
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=16)
