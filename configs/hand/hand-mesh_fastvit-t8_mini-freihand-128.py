# Quick recipe on the procedural mini-FreiHAND set (CPU-friendly). Generate the data first:
#   python tools/dataset_converters/make_mini_freihand.py data/mini_freihand \
#       --num-train 1024 --num-eval 64 --image-size 128 --max-tilt 45
# (hands shown to the camera, palm or back, tilted <= 45 deg, any in-plane rotation)
# then: python tools/train.py configs/hand/hand-mesh_fastvit-t8_mini-freihand-128.py
_base_ = ['./_base_hand-mesh_freihand-224.py']

data_root = 'data/mini_freihand'
input_size = 128
num_val = 32

model = dict(
    backbone=dict(type='hybridvit.FastViT', arch='t8', out_indices=(0, 1, 2, 3), init_cfg=None),
    head=dict(
        in_channels=384,  # the MLP reads the last stage (stride 32)
        in_index=-1,
        pool_size=4,  # 4x4 grid of the last stage (pool_size=1 scores the same: docs/hand_mesh.md)
        # hand-frame mesh placed by a similarity fit onto integral 2.5D keypoints read from the
        # stride-4/8/16/32 maps fused at stride 4 (32x32 heatmaps; 64 channels keep the conv cost
        # of 128 at stride 8: docs/hand_mesh.md); at test time each keypoint is read within
        # 2 cells of its heatmap's peak (local soft-argmax)
        keypoint_branch=dict(in_channels=(48, 96, 192, 384), in_index=(0, 1, 2, 3), channels=64,
                             test_window=2),
        hidden_dims=(512, ),
        # procedural mesh faces written by the generator: enables edge / normal losses
        faces=data_root + '/mesh_faces.json',
        # camera-frame L1 plus L1 after rigid alignment (trains shape despite ambiguous rotation);
        # the aligned vertices weigh double (PA-MPVPE 17.7 -> 15.6 mm: docs/hand_mesh.md)
        loss_weights=dict(joints=0.5, verts=0.5, pa_joints=1.0, pa_verts=2.0, keypoints_2d=0.1,
                          edge=1.0, normal=0.1)))

train_pipeline = [
    dict(type='LoadHandImage'),
    dict(type='HandRandomRotate', max_angle=45.0, prob=0.5),
    dict(type='HandCropResize', out_size=input_size, center_mode='image',
         scale_range=(0.9, 1.1), shift=0.05),
    dict(type='HandColorJitter', brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    dict(type='PackHandMeshInputs'),
]
test_pipeline = [
    dict(type='LoadHandImage'),
    dict(type='HandCropResize', out_size=input_size, center_mode='image'),
    dict(type='PackHandMeshInputs'),
]
# tools/test.py --tta: four in-plane rotated views, rotated back and averaged (base config)
tta_pipeline = [
    dict(type='LoadHandImage'),
    dict(type='TestTimeAug',
         transforms=[[dict(type='HandRotate', angle=0), dict(type='HandRotate', angle=90),
                      dict(type='HandRotate', angle=180), dict(type='HandRotate', angle=270)],
                     [dict(type='HandCropResize', out_size=input_size, center_mode='image')],
                     [dict(type='PackHandMeshInputs')]]),
]
train_dataloader = dict(
    batch_size=16, num_workers=2,
    dataset=dict(data_root=data_root, num_val=num_val, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=2,
    dataset=dict(data_root=data_root, num_val=num_val, pipeline=test_pipeline))
test_dataloader = dict(
    batch_size=16, num_workers=2,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(type='HandMeshMetric', out_dir='work_dirs/mini_freihand_eval')

# 4000 iterations: the projected skeleton below 6 px (5.70; 6.33 at 3000: docs/hand_mesh.md)
max_iters = 4000
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=500)
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-5, by_epoch=False, begin=0,
         end=max_iters),
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=500, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
