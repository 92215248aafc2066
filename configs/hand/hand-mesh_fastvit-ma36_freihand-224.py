# FastViT-MA36 + MANO-free regression head on FreiHAND (paper: PA-MPJPE 6.6 / PA-MPVPE 6.7 mm,
# F@5 0.722, F@15 0.981 with a MANO-parameter head; not reproduced here).
_base_ = ['./_base_hand-mesh_freihand-224.py']

model = dict(
    backbone=dict(
        type='hybridvit.FastViT',
        arch='ma36',
        out_indices=(1, 2, 3),  # strides 8 / 16 / 32
        drop_path_rate=0.2,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_ma36.pth.tar')),
    head=dict(in_channels=608,
              # mesh placed by fits onto integral 2.5D keypoints (docs/hand_mesh.md)
              keypoint_branch=dict(in_channels=(152, 304, 608), in_index=(0, 1, 2),
                                   channels=128)))
