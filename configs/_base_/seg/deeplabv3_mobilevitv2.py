# DeepLabv3 with a MobileViTv2 backbone (arXiv 2206.02680), ml-cvnets' protocol
# (config/segmentation/{ade20k,pascal_voc}/deeplabv3_mobilevitv2.yaml): ASPP with 512 channels and
# dropout 0.1 on L5, auxiliary FCN head on L4 (3x3 conv to max(C4 // 4, 128) channels, dropout 0.1,
# loss weight 0.4). The dataset bases set output stride and ASPP rates; variant files set `arch`,
# the checkpoint and the head in_channels.
# NOTE: mmseg's ASPPHead fuses the branches with a 3x3 conv where cvnets uses a 1x1 projection.
_base_ = ['mmseg::_base_/models/deeplabv3_r50-d8.py']
custom_imports = dict(imports=['hybridvit.models', 'hybridvit.engine'], allow_failed_imports=False)

# MobileViTv2 was pretrained on RGB scaled to [0, 1] without mean/std: mean 0, std 255 on 0-255.
data_preprocessor = dict(size=(512, 512), mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0],
                         bgr_to_rgb=True)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='hybridvit.MobileViTv2',
        arch='1.0',
        out_indices=(3, 4),
        output_stride=16,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/mobilevitv2_100.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    decode_head=dict(in_channels=512, in_index=1, channels=512, dilations=(1, 6, 12, 18),
                     dropout_ratio=0.1),
    auxiliary_head=dict(in_channels=384, in_index=0, channels=128, num_convs=1,
                        concat_input=False, dropout_ratio=0.1))
