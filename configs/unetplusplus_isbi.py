"""UNet++ (Zhou et al., DLMIA 2018, arXiv:1807.10165) on ISBI 2012 EM: a stated stand-in.

The paper evaluates on cell nuclei (Data Science Bowl 2018), colon polyps,
liver (LiTS) and lung nodules (LIDC-IDRI); none of them is on these machines,
and the paper's own splits are not published. The stand-in is the ISBI 2012
EM stack (../shared/data/isbi2012_em, slices 0-24 train, 25-29 held out),
which the journal version (Zhou et al., TMI 2019, arXiv:1912.05074) added to
UNet++'s benchmarks; no paper number applies to this split, so the table
compares nothing for it.

The paper's network and training: UNet++ with the paper's filters (32, 64,
128, 256, 512), batch norm, deep supervision (the four branch heads averaged
at test time), binary cross-entropy + Dice loss on 96 x 96 patches, Adam
with a learning rate of 3e-4, early stopping (here a fixed 20k steps of batch
32, stated), flips and quarter turns; evaluation on whole 512 x 512 slices.

Mesh: a v5e-4 (4 chips), 8 patches per chip.

    WORKDIR=/mnt/shared/runs/unetpp_isbi experiments/launch/tpu_pod.sh configs/unetplusplus_isbi.py
    python -m segjax.main --config configs/unetplusplus_isbi.py:smoke --workdir /tmp/smoke
"""

from configs import common

PAPER = common.Paper("Zhou et al. 2018, UNet++, arXiv:1807.10165",
                     "stand-in (ISBI 2012 EM): the paper reports no number for it", 0.0, "-")


def get_config(arg: str = ""):
    _, options = common.parse_options(arg, "configs/unetplusplus_isbi.py")
    return common.reproduction(
        arg, "configs/unetplusplus_isbi.py", options=options, dataset="isbi", paper=PAPER,
        model=dict(name="unetplusplus", filters=(32, 64, 128, 256, 512), norm="batch",
                   deep_supervision=True, combine="average"),
        pretrained="", crop=(96, 96), batch=32,
        optimizer=dict(name="adam", learning_rate=3e-4, schedule="constant"),
        steps=20_000, augment=dict(hflip=True, vflip=True, rot90=True),
        loss=dict(name="cross_entropy+dice", aux_weight=1.0),
        evaluation=dict(tile=(), scales=(1.0,), flip=False), slice_name="v5e-4",
        smoke_model=dict(name="unetplusplus", filters=(4, 8, 16, 32, 64), norm="batch",
                         deep_supervision=True, combine="average"))
