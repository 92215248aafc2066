# Deploy variant: the backbone is built fused (load a checkpoint from tools/deploy/reparameterize.py).
_base_ = './fpn_fastvit-mci2_8xb4-40k_ade20k-512x512.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
