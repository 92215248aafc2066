# Deploy variant: fused backbone (load a checkpoint from tools/deploy/reparameterize.py).
_base_ = './mask-rcnn_fastvit-mci2_fpn_1x_coco.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
