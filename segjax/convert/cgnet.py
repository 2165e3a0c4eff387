"""Mapping of the official CGNet (wutianyiRosun/CGNet, model/CGNet.py) onto segjax's "cgnet".

Official names: `level1_{0,1,2}.{conv,bn,act}` (ConvBNPReLU); `b1`,
`bn_prelu_2`, `bn_prelu_3`.{bn,act}; the down-sampling blocks `level{2,3}_0`
with `conv1x1.{conv,bn,act}`, `F_loc.conv`, `F_sur.conv`, `bn`, `act`,
`reduce.conv`, `F_glo.fc.{0,2}`; the CG blocks `level{2,3}.{i}` with
`conv1x1`, `F_loc`, `F_sur`, `bn_prelu.{bn,act}`, `F_glo.fc.{0,2}`;
`classifier.{0,1}.conv` (index 1 when the model was built with dropout).
Checkpoints saved from `nn.DataParallel` carry a `module.` prefix, which is
accepted. segjax names: see `segjax.models.cgnet`.
"""

from segjax.convert.core import chain, prefixed, register_mapping, rules

BLOCK_PARTS = (
    (r"conv1x1\.conv", "reduce_input/conv"),
    (r"conv1x1\.bn", "reduce_input/norm/bn"),
    (r"conv1x1\.act", "reduce_input/act"),
    (r"F_loc\.conv", "f_loc"),
    (r"F_sur\.conv", "f_sur"),
    (r"(?:bn_prelu\.)?bn", "f_joi/bn/bn"),
    (r"(?:bn_prelu\.)?act", "f_joi/act"),
    (r"reduce\.conv", "reduce_joint"),
    (r"F_glo\.fc\.0", "f_glo/fc0"),
    (r"F_glo\.fc\.2", "f_glo/fc1"),
)


def _block_rules():
    """The CG block parts under `level{s}_0` (down-sampling) and `level{s}.{i}`."""
    pairs = []
    for part, target in BLOCK_PARTS:
        pairs.append((rf"level([23])_0\.{part}", rf"level\1_down/{target}"))
        pairs.append((rf"level([23])\.(\d+)\.{part}", rf"level\1_\2/{target}"))
    return pairs


@register_mapping("cgnet_official", models=("cgnet",))
def cgnet_official():
    """The official CGNet's state_dict (any M, N and class count)."""
    body = rules(
        (r"level1_(\d)\.conv", r"level1_\1/conv"),
        (r"level1_(\d)\.bn", r"level1_\1/norm/bn"),
        (r"level1_(\d)\.act", r"level1_\1/act"),
        (r"(b1|bn_prelu_2|bn_prelu_3)\.bn", r"\1/bn/bn"),
        (r"(b1|bn_prelu_2|bn_prelu_3)\.act", r"\1/act"),
        *_block_rules(),
        (r"classifier\.\d\.conv", "classifier"),
    )
    return chain(body, prefixed("module.", "", body))
