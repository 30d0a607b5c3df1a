# UPerNet + BiFormer-S on ADE20K, 160k iterations: the headline config (see ../biformer_ade20k.py).
_base_ = '../biformer_ade20k.py'
