# DeepLabv3 with a FastViT backbone at output stride 16 (last downsampling replaced by dilation).
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py']
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

data_preprocessor = dict(size=(512, 512))  # ImageNet mean/std on 0-255 RGB, as pretraining
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='hybridvit.FastViT',
        arch='sa12',
        out_indices=(2, 3),
        output_stride=16,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa12.pth.tar')),
    decode_head=dict(in_channels=512, in_index=1, channels=256, dilations=(1, 6, 12, 18)),
    auxiliary_head=dict(in_channels=256, in_index=0))
