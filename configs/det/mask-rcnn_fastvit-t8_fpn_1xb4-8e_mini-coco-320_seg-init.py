# Mini recipe with a warm start: the backbone starts from the segmentation quick start
# (tools/quickstart.sh -> work_dirs/quickstart/iter_300.pth: FastViT-T8 Semantic FPN trained on
# mini ADE20K, whose scenes hold the same five object classes). Only `backbone.*` is read.
_base_ = './mask-rcnn_fastvit-t8_fpn_1xb4-8e_mini-coco-320.py'
model = dict(
    backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', prefix='backbone.',
                                checkpoint='work_dirs/quickstart/iter_300.pth')))
