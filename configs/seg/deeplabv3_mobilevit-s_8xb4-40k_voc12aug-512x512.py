# DeepLabv3 + MobileViT-S (OS16, ASPP 256 ch, rates 6/12/18) on PASCAL VOC 2012 + SBD aug,
# 512x512. Paper: 79.1 mIoU (MobileViT, Table 4; trained with extra data, see README).
_base_ = [
    '../_base_/seg/deeplabv3_mobilevit.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
model = dict(
    backbone=dict(arch='s', init_cfg=dict(checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=160, num_classes=21))
# cvnets-style optimisation (AdamW, cosine schedule below)
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
