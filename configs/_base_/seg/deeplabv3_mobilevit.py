# DeepLabv3 with a MobileViT v1 backbone (arXiv 2110.02178 §4.2.2): output stride 16, ASPP with
# 256 channels and rates 6/12/18, no auxiliary head, final 1x1 expansion conv dropped (as cvnets).
# Dataset / schedule bases are added by the files that inherit this one.
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py']
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

# MobileViT was pretrained on RGB scaled to [0, 1] without mean/std: mean 0, std 255 on 0-255.
data_preprocessor = dict(size=(512, 512), mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],
                         bgr_to_rgb=True)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='hybridvit.MobileViT',
        arch='s',
        out_indices=(4, ),
        output_stride=16,
        final_expansion=False,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(
        in_channels=160, in_index=0, channels=256, dilations=(1, 6, 12, 18), num_classes=21),
    auxiliary_head=None)

