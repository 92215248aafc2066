# Deploy variant of the quick-start model: fused FastViT-T8 (weights from
# tools/deploy/reparameterize.py).
_base_ = './fpn_fastvit-t8_1xb4-300it_mini-ade-256x256.py'
model = dict(backbone=dict(deploy=True))
