"""Pure array functions under the models: the shared convolution, attention, the dense CRF.

`conv` (the one convolution every layer uses; `conv_cpu` and `winograd` its CPU
formulation), `attention` and `axial_attention`, `crf` (DeepLab's dense CRF).
"""
