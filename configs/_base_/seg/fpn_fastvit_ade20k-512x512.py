# Semantic FPN with a FastViT backbone on ADE20K 512x512: the PoolFormer protocol that FastViT
# reused (arXiv 2303.14189 §4.3): 40k iterations, 8 GPUs x 4 images, AdamW lr 2e-4 wd 1e-4, poly 0.9.
# Variant files set `arch`, the FPN `in_channels` and the ImageNet checkpoint.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
]
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

crop_size = (512, 512)
# FastViT was pretrained on ImageNet mean/std over 0-255 RGB (mmseg's defaults, bgr_to_rgb=True).
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
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
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=256, num_outs=4),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4),
    clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
train_dataloader = dict(batch_size=4)
# The paper's batch is 8 GPUs x 4 images; `--auto-scale-lr` rescales lr for other totals.
auto_scale_lr = dict(enable=False, base_batch_size=32)
