# The name users asked for: Semantic FPN + FastViT-SA24 on ADE20K 512x512, paper protocol
# (40k iterations, 8 GPUs x 4 images, AdamW lr 2e-4 wd 1e-4, poly 0.9).
_base_ = './fpn_fastvit-sa24_8xb4-40k_ade20k-512x512.py'
