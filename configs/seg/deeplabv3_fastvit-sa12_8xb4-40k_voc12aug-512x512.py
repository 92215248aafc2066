# DeepLabv3 + FastViT-SA12 at output stride 16 on PASCAL VOC 2012 + SBD aug, 512x512.
_base_ = [
    '../_base_/seg/deeplabv3_fastvit.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
model = dict(decode_head=dict(num_classes=21), auxiliary_head=dict(num_classes=21))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
train_dataloader = dict(batch_size=4)
auto_scale_lr = dict(enable=False, base_batch_size=32)
