# Demo (the README's main job): UPerNet + BiFormer-T (random init) on the synthetic ADE20K stand-in
# (python tools/make_demo_data.py), 128px crops. n_win 4 makes the routing regions of stages 1-3 8x8, 4x4
# and 2x2 tokens, with 64 routed keys per query as at 224px with n_win 7. 200 iterations of batch 8, each
# 1.8 CPU-seconds single-threaded (ResNet-18 demo: 1.35); the whole tools/demo.py run took 417 CPU-seconds
# single-threaded (measured at load average 4-10 on a shared 2-core machine), so about 4-7 minutes of wall
# time on an unloaded 2-core CPU. It reached 96.8% mIoU (majority-class baseline 11.5%).
_base_ = './upernet_resnet18_ade20k_demo.py'
model = dict(
    backbone=dict(model_name='biformer_tiny', model_kwargs=dict(n_win=4, feature_norms=True)),
    decode_head=dict(in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(in_channels=256))
param_scheduler = [dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=0, end=200, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=200, val_interval=200)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=100))
