# Same as the fixed-size config, with the MobileViT paper's multi-scale variable-batch sampler:
# each batch has one resolution from `scales`, and its size is round(4 * 512^2 / (h * w)).
_base_ = './deeplabv3_mobilevit-xxs_8xb4-40k_voc12aug-512x512.py'
train_dataloader = dict(
    batch_size=4,
    batch_sampler=dict(
        type='hybridvit.MultiScaleBatchSampler',
        scales=[(384, 384), (448, 448), (512, 512), (576, 576), (640, 640)],
        base_size=(512, 512)),
    dataset=dict(_delete_=True, type='hybridvit.MultiScaleDataset',
                 dataset={{_base_.train_dataloader.dataset}}))
