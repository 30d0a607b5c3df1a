# UPerNet + timm's halonet26t (timm/halonet26t.a1h_in1k) on ADE20K: the recipe of upernet_halonet50ts_ade20k.py.
_base_ = './upernet_halonet50ts_ade20k.py'
model = dict(backbone=dict(model_name='halonet26t'))
