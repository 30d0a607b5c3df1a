# Runtime shared by every task. The task's default_scope, visualizer and default_hooks come from its
# dataset and schedule bases.
custom_imports = dict(imports=['visionattn.mm'], allow_failed_imports=False)
runner_type = 'visionattn.Runner'  # safe resume on torch >= 2.6, CPU (gloo) distribution
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'))
custom_hooks = [dict(type='visionattn.MetricsJsonHook')]  # <work_dir>/metrics_{val,test}.json
log_level = 'INFO'
# visionattn.Runner's own keys: tensorboard=True (or --tensorboard) also writes TensorBoard events under
# <work_dir>/<timestamp>/vis_data; console='verbose' (or --verbose) shows the environment, full config, hook
# order, per-class tables and third-party warnings on the console as well (the log file always has them).
tensorboard = False
console = 'quiet'
load_from = None
resume = False
load_strict = True  # a checkpoint must fit the model (False, or --non-strict: load what fits, warn about the rest)
