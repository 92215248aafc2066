# FastViT-SA12 + MANO-free regression head on FreiHAND.
_base_ = ['./_base_hand-mesh_freihand-224.py']

model = dict(
    backbone=dict(
        type='hybridvit.FastViT',
        arch='sa12',
        out_indices=(1, 2, 3),  # strides 8 / 16 / 32
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
            'image_classification_models/fastvit_sa12.pth.tar')),
    head=dict(in_channels=512,
              # mesh placed by fits onto integral 2.5D keypoints (docs/hand_mesh.md)
              keypoint_branch=dict(in_channels=(128, 256, 512), in_index=(0, 1, 2),
                                   channels=128)))
