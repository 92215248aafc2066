# DeepLabv3 + MobileViT on PASCAL VOC 2012 + SBD aug, 512x512, 40k iterations x 32 images,
# cvnets-style optimisation (AdamW, warm-up + cosine). Variant files set arch / checkpoint /
# ASPP in_channels.
_base_ = [
    './deeplabv3_mobilevit.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
model = dict(decode_head=dict(num_classes=21))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=9e-4, weight_decay=0.01),
    clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=False, begin=500, end=40000),
]
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)
