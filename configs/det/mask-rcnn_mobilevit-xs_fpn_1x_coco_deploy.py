# Deploy variant: BN folded into convs (load a checkpoint from tools/deploy/reparameterize.py).
_base_ = './mask-rcnn_mobilevit-xs_fpn_1x_coco.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
