# DeepLabv3 + MobileViT on ADE20K 512x512, 160k iterations x 32 images, AdamW + cosine.
_base_ = [
    './deeplabv3_mobilevit.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]
model = dict(decode_head=dict(num_classes=150))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=9e-4, weight_decay=0.01),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1500),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=1500, end=160000),
]
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)
