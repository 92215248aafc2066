# Deploy variant: BN folded into convs (load a checkpoint from tools/deploy/reparameterize.py).
_base_ = './deeplabv3_mobilevitv2-075_4xb32-4k_voc12aug-512x512.py'
model = dict(backbone=dict(deploy=True, init_cfg=None))
