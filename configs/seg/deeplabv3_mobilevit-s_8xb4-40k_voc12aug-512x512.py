# DeepLabv3 + MobileViT-S (OS16, ASPP 256 ch, rates 6/12/18) on PASCAL VOC 2012 + SBD aug,
# 512x512. Paper: 79.1 mIoU (MobileViT, Table 4; trained with extra data, see README).
_base_ = '../_base_/seg/deeplabv3_mobilevit_voc12aug-512x512.py'
model = dict(
    backbone=dict(arch='s', init_cfg=dict(checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/model.safetensors')),
    decode_head=dict(in_channels=160))
