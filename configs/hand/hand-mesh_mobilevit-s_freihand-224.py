# MobileViT-S + MANO-free regression head on FreiHAND.
_base_ = ['./_base_hand-mesh_freihand-224.py']

model = dict(
    # MobileViT was pretrained on RGB in [0, 1]: mean 0, std 255.
    data_preprocessor=dict(mean=[0.0, 0.0, 0.0], std=[255.0, 255.0, 255.0], bgr_to_rgb=True),
    backbone=dict(
        _delete_=True,
        type='hybridvit.MobileViT',
        arch='s',
        out_indices=(2, 3, 4),  # strides 8 / 16 / 32
        final_expansion=True,  # L5 output through the 1x1 expansion conv: 640 channels
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://huggingface.co/timm/mobilevit_s.cvnets_in1k/resolve/main/'
            'model.safetensors')),
    head=dict(in_channels=640,
              # mesh placed by fits onto integral 2.5D keypoints (docs/hand_mesh.md)
              keypoint_branch=dict(in_channels=(96, 128, 640), in_index=(0, 1, 2),
                                   channels=128)))
