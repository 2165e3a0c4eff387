"""The preset table: every public checkpoint segjax loads by name, as plain data.

A `Preset` says what a name means: the model it builds (a registry config:
`name` + fields, the encoder alone for `part="encoder"`), where its file is
(`Source`: a Hugging Face Hub repository pinned to a commit, or an HTTPS URL),
the file's SHA-256, the converter (a registered `segjax.convert` mapping), the
input normalisation it was trained with (`Normalization`), its classes, licence,
paper, dataset and the metric its authors report. Nothing here imports JAX:
export, docs and configs read the table without building anything.

Names are `<segjax model or encoder>.<origin>_<dataset>`: `resnet50.tv_in1k`
(torchvision's ImageNet-1k weights), `segformer_b2.nvidia_ade20k` (NVIDIA's
ADE20K release). `python -m segjax.pretrained` lists them; `UNAVAILABLE` says
which registered families have none and why.

SHA-256: torchvision, timm's GitHub releases and OpenMMLab publish the first 8
hex digits of the file's SHA-256 in its name (`resnet50-0676ba61.pth`), and
that published prefix is what is stored and verified for them. A Hub file at
a pinned commit is fixed by the commit; its full SHA-256 is the Hub's LFS
object id, which the Hub cache names the file by, and which the download
verifies (`segjax.pretrained.download`).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from segjax.pretrained import classes

CHANNEL_ORDERS = ("RGB", "BGR")
SOURCE_KINDS = ("hub", "url", "file")
PARTS = ("model", "encoder")


@dataclasses.dataclass(frozen=True)
class Normalization:
    """The input a checkpoint expects: (x - mean) / std per channel, with x in `value_range`
    (an 8-bit image scaled linearly onto it) and channels in `channel_order`."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    value_range: tuple[float, float] = (0.0, 1.0)
    channel_order: str = "RGB"

    def as_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std),
                "value_range": list(self.value_range), "channel_order": self.channel_order}

    def data_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) in config.data's convention, (x / 255 - mean) / std for uint8 x.

        Only RGB images in a range starting at 0 are expressible that way
        (segjax reads images as RGB); any other is a ValueError naming it.
        """
        low, high = self.value_range
        if self.channel_order != "RGB" or low != 0.0:
            raise ValueError(f"normalisation {self.as_dict()} is not expressible as "
                             "config.data.mean/std (RGB, values from 0)")
        scale = high / 1.0
        return (tuple(m / scale for m in self.mean), tuple(s / scale for s in self.std))


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a checkpoint file is: `hub` (repository `location`, `filename`, a pinned commit
    `revision`), `url` (HTTPS) or `file` (a local path); `sha256`: its full hex digest or the
    published prefix ('' for a Hub file: the Hub's LFS SHA-256 is checked)."""

    kind: str
    location: str
    filename: str = ""
    revision: str = ""
    sha256: str = ""

    def __post_init__(self):
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"Source.kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        if self.sha256 and not re.fullmatch(r"[0-9a-f]{8,64}", self.sha256):
            raise ValueError(f"Source.sha256 must be 8 to 64 lower-case hex digits, "
                             f"got {self.sha256!r}")

    @property
    def file_name(self) -> str:
        """The file's own name (without directories)."""
        if self.kind == "hub":
            return self.filename.rsplit("/", 1)[-1]
        return self.location.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]

    def spec(self) -> str:
        """The spec string `segjax.pretrained.load` accepts for this file."""
        if self.kind == "hub":
            revision = f"@{self.revision}" if self.revision else ""
            return f"hf://{self.location}{revision}/{self.filename}"
        if self.kind == "url":
            return self.location + (f"#sha256={self.sha256}" if self.sha256 else "")
        return self.location


@dataclasses.dataclass(frozen=True)
class Preset:
    """One entry of the table (module docstring)."""

    name: str
    model: Mapping[str, Any]          # registry config of what the weights fill
    part: str                         # "model" (a whole network) | "encoder"
    source: Source
    converter: str                    # a registered segjax.convert mapping
    normalization: Normalization | None   # None: unknown (an ad-hoc spec)
    licence: str
    paper: str
    dataset: str
    metric: str                       # what the authors report, as they report it
    parameters: int                   # of `model` ('params' collection), checked by tests
    input_size: tuple[int, int]       # the training / evaluation crop
    num_classes: int | None = None    # None: an encoder (its classifier is dropped)
    class_names: tuple[str, ...] = ()
    reference: str = ""               # the PyTorch module the state dict comes from
    # Flax variables (regexes over 'module/.../leaf' paths) the checkpoint does not
    # hold, which keep their fresh initialisation (e.g. DPT's reassembly on an ImageNet ViT).
    fresh: tuple[str, ...] = ()
    note: str = ""

    def __post_init__(self):
        if self.part not in PARTS:
            raise ValueError(f"preset {self.name}: part must be one of {PARTS}, got {self.part!r}")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"preset {self.name}: {len(self.class_names)} class names for "
                             f"{self.num_classes} classes")

    @property
    def model_name(self) -> str:
        return str(self.model["name"])

    def as_dict(self) -> dict[str, Any]:
        """The entry as JSON-serialisable data (what export and docs read)."""
        record = dataclasses.asdict(self)
        record["model"] = dict(self.model)
        record["normalization"] = self.normalization.as_dict() if self.normalization else None
        record["source"]["spec"] = self.source.spec()
        return record


IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# OpenMMLab's configs state the same statistics on the 0-255 scale.
IMAGENET_255 = Normalization((123.675, 116.28, 103.53), (58.395, 57.12, 57.375), (0.0, 255.0))
HALF = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))   # Inception / Google ViT style

TORCHVISION_LICENCE = "BSD-3-Clause (torchvision)"
NVIDIA_LICENCE = "NVIDIA Source Code License for SegFormer (non-commercial)"
_RESNET = "He et al. 2015, arXiv:1512.03385"
_V1C = "He et al. 2019, Bag of Tricks (ResNet-C stem), arXiv:1812.01187"
_SEGFORMER = "Xie et al. 2021, SegFormer, arXiv:2105.15203"
_VIT = "Dosovitskiy et al. 2020, ViT, arXiv:2010.11929"
_DPT = "Ranftl et al. 2021, DPT, arXiv:2103.13413"
_TV = "https://download.pytorch.org/models/"
_MMLAB = "https://download.openmmlab.com/pretrain/third_party/"
_TIMM_RELEASES = "https://github.com/rwightman/pytorch-image-models/releases/download/"
DPT_REASSEMBLY = (r"reassemble\d+/.*",)


def _url(url: str) -> Source:
    """A URL whose file name carries the published SHA-256 prefix (`name-<8 hex>.pth`)."""
    match = re.search(r"-([0-9a-f]{8})\.\w+$", url)
    if match is None:
        raise ValueError(f"no SHA-256 prefix in the file name of {url}")
    return Source("url", url, sha256=match.group(1))


def _hub(repo: str, revision: str, filename: str) -> Source:
    return Source("hub", repo, filename, revision)


def _torchvision_encoders() -> list[Preset]:
    entries = (
        # name, encoder config, file, acc@1, parameters, converter, paper
        ("resnet18", {"name": "resnet18"}, "resnet18-f37072fd.pth", 69.758, 11176512,
         "torchvision_resnet", _RESNET),
        ("resnet34", {"name": "resnet34"}, "resnet34-b627a593.pth", 73.314, 21284672,
         "torchvision_resnet", _RESNET),
        ("resnet50", {"name": "resnet50"}, "resnet50-0676ba61.pth", 76.130, 23508032,
         "torchvision_resnet", _RESNET),
        ("resnet101", {"name": "resnet101"}, "resnet101-63fe2227.pth", 77.374, 42500160,
         "torchvision_resnet", _RESNET),
        ("mobilenetv2", {"name": "mobilenetv2"}, "mobilenet_v2-b0353104.pth", 71.878, 2223872,
         "torchvision_mobilenet_v2", "Sandler et al. 2018, MobileNetV2, arXiv:1801.04381"),
        ("mobilenetv3_large", {"name": "mobilenetv3_large"}, "mobilenet_v3_large-8738ca79.pth",
         74.042, 2971952, "torchvision_mobilenet_v3_large",
         "Howard et al. 2019, MobileNetV3, arXiv:1905.02244"),
        ("vgg16", {"name": "vgg16", "fc": "fcn"}, "vgg16-397923af.pth", 71.592, 134260544,
         "torchvision_vgg16", "Simonyan & Zisserman 2014, VGG, arXiv:1409.1556"),
    )
    return [Preset(
        name=f"{name}.tv_in1k", model=model, part="encoder", source=_url(_TV + file),
        converter=converter, normalization=IMAGENET, licence=TORCHVISION_LICENCE, paper=paper,
        dataset="ImageNet-1k", metric=f"ImageNet-1k val top-1 {accuracy:.3f}",
        parameters=parameters, input_size=(224, 224),
        reference=f"torchvision.models.{file.rsplit('-', 1)[0]}",
        note="fc6/fc7 convolutionalised as in FCN (`fc='fcn'`)" if name == "vgg16" else "")
        for name, model, file, accuracy, parameters, converter, paper in entries]


def _mmseg_v1c_encoders() -> list[Preset]:
    entries = (("resnet18_v1c", "resnet18_v1c-b5776b93.pth", 11195744),
               ("resnet50_v1c", "resnet50_v1c-2cccc1ad.pth", 23527264),
               ("resnet101_v1c", "resnet101_v1c-e67eebb6.pth", 42519392))
    return [Preset(
        name=f"{name}.mmseg_in1k", model={"name": name}, part="encoder",
        source=_url(_MMLAB + file), converter="resnet_deep_stem", normalization=IMAGENET_255,
        licence="Apache-2.0 (OpenMMLab)", paper=_V1C, dataset="ImageNet-1k",
        metric="not reported by the publisher", parameters=parameters, input_size=(224, 224),
        reference="mmseg.models.backbones.ResNetV1c")
        for name, file, parameters in entries]


# smp's own weight table (segmentation_models_pytorch 0.6 encoders/mix_transformer.py).
MIT_REVISIONS = {
    "b0": "9ce53d104d92d75aabb00aae70677aaab67e7c84",
    "b1": "a04bf4f13a549bce677cf79b04852e7510782817",
    "b2": "868ab6f13871dcf8c3d9f90ee4519403475b65ef",
    "b3": "32558d12a65f1daa0ebcf4f4053c4285e2c1cbda",
    "b4": "3a3454e900a4b4f11dd60eeb59101a9a1a36b017",
    "b5": "ced04d96c586b6297fd59a7a1e244fc78fdb6531",
}
MIT_PARAMETERS = {"b0": 3319392, "b1": 13151424, "b2": 24196288, "b3": 44072128,
                  "b4": 60842688, "b5": 81443008}


def _mit_encoders() -> list[Preset]:
    return [Preset(
        name=f"mit_{variant}.smp_in1k", model={"name": f"mit_{variant}"}, part="encoder",
        source=_hub(f"smp-hub/mit_{variant}.imagenet", revision, "model.safetensors"),
        converter="smp_mit", normalization=IMAGENET, licence=NVIDIA_LICENCE, paper=_SEGFORMER,
        dataset="ImageNet-1k", metric="not reported by the authors",
        parameters=MIT_PARAMETERS[variant], input_size=(224, 224),
        reference=f"segmentation_models_pytorch encoder mit_{variant}")
        for variant, revision in MIT_REVISIONS.items()]


def _vit_encoders() -> list[Preset]:
    entries = (
        ("dpt_vit_b16", "google/vit-base-patch16-384", "ac80a30796ee74a42fb51b05ae57f6df85c41703",
         97523904),
        ("dpt_vit_l16", "google/vit-large-patch16-384", "4b143e77059a54c70b348a76677ab9946f584e13",
         326505984),
    )
    return [Preset(
        name=f"{encoder}.google_in21k_ft_in1k",
        model={"name": encoder, "layer_norm_epsilon": 1e-12}, part="encoder",
        source=_hub(repo, revision, "pytorch_model.bin"), converter="hf_vit",
        normalization=HALF, licence="Apache-2.0", paper=f"{_VIT}; {_DPT}",
        dataset="ImageNet-21k, fine-tuned on ImageNet-1k at 384x384",
        metric="not reported on the model card", parameters=parameters, input_size=(384, 384),
        reference="transformers.ViTForImageClassification", fresh=DPT_REASSEMBLY,
        note="the ViT DPT starts from; DPT's reassembly layers start fresh")
        for encoder, repo, revision, parameters in entries]


def _timm_encoders() -> list[Preset]:
    return [
        Preset(
            name="xception65.tf_in1k", model={"name": "xception65"}, part="encoder",
            source=_url(_TIMM_RELEASES + "v0.1-weights/tf_xception_65-c9ae96e8.pth"),
            converter="timm_xception", normalization=HALF, licence="Apache-2.0",
            paper="Chen et al. 2018, DeepLabv3+ (aligned Xception-65), arXiv:1802.02611",
            dataset="ImageNet-1k", metric="ImageNet-1k val top-1 79.55 (timm)",
            parameters=37867312, input_size=(299, 299),
            reference="timm.models.xception65 (XceptionAligned)",
            note="DeepLab's TensorFlow ImageNet weights, ported by timm"),
        Preset(
            name="dpt_vit_hybrid.timm_in21k_ft_in1k",
            model={"name": "dpt_vit_hybrid", "layer_norm_epsilon": 1e-6}, part="encoder",
            source=_url(_TIMM_RELEASES + "v0.1-vitjx/jx_vit_base_resnet50_384-9fd3c705.pth"),
            converter="timm_vit", normalization=HALF, licence="Apache-2.0",
            paper=f"{_VIT} (R50+ViT-B/16 hybrid); {_DPT}",
            dataset="ImageNet-21k, fine-tuned on ImageNet-1k at 384x384",
            metric="not reported on the model card", parameters=107033152,
            input_size=(384, 384), reference="timm.models.vit_base_r50_s16_384",
            fresh=DPT_REASSEMBLY,
            note="the hybrid ViT DPT-Hybrid starts from; DPT's reassembly layers start fresh"),
    ]


def _torchvision_models() -> list[Preset]:
    entries = (
        ("tv_fcn_resnet50", "fcn_resnet50_coco-1167a1af.pth", 60.5, 91.4, 35322218,
         "torchvision_fcn", "Long et al. 2015, FCN, arXiv:1411.4038"),
        ("tv_fcn_resnet101", "fcn_resnet101_coco-7ecb50ca.pth", 63.7, 91.9, 54314346,
         "torchvision_fcn", "Long et al. 2015, FCN, arXiv:1411.4038"),
        ("tv_deeplabv3_resnet50", "deeplabv3_resnet50_coco-cd0a2569.pth", 66.4, 92.4,
         42004074, "torchvision_deeplabv3", "Chen et al. 2017, DeepLabv3, arXiv:1706.05587"),
        ("tv_deeplabv3_resnet101", "deeplabv3_resnet101_coco-586e9e4e.pth", 67.4, 92.4,
         60996202, "torchvision_deeplabv3", "Chen et al. 2017, DeepLabv3, arXiv:1706.05587"),
        ("tv_deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large-fc3c493d.pth", 60.3,
         91.2, 11029328, "torchvision_deeplabv3",
         "Chen et al. 2017, DeepLabv3, arXiv:1706.05587"),
    )
    return [Preset(
        name=f"{model}.tv_coco_voc", model={"name": model, "num_classes": 21}, part="model",
        source=_url(_TV + file), converter=converter, normalization=IMAGENET,
        licence=TORCHVISION_LICENCE, paper=paper,
        dataset="COCO train2017, the 20 VOC classes", num_classes=21, class_names=classes.VOC,
        metric=f"COCO val2017 (VOC labels) mIoU {miou}, pixel accuracy {accuracy}",
        parameters=parameters, input_size=(520, 520),
        reference=f"torchvision.models.segmentation.{model[3:]}")
        for model, file, miou, accuracy, parameters, converter, paper in entries]


# Commits of nvidia/segformer-b*-finetuned-* holding pytorch_model.bin (the Hub's history).
SEGFORMER_ADE20K = {
    "b0": ("nvidia/segformer-b0-finetuned-ade-512-512",
           "796c37238c4559b5c6d5db81afae8c39a5335be5", 37.4, (512, 512)),
    "b1": ("nvidia/segformer-b1-finetuned-ade-512-512",
           "0ff9478540831fcf29292ad1cabc7162c9f21a6a", 42.2, (512, 512)),
    "b2": ("nvidia/segformer-b2-finetuned-ade-512-512",
           "aa9dd01bb0cf06b5f819927557bc909988a6beef", 46.5, (512, 512)),
    "b3": ("nvidia/segformer-b3-finetuned-ade-512-512",
           "11a78e7c2b9756ea98de921b4099917ade43a6b9", 49.4, (512, 512)),
    "b4": ("nvidia/segformer-b4-finetuned-ade-512-512",
           "f794f9f504f8cf0c0bc120155dbaf1de4256dd54", 50.3, (512, 512)),
    "b5": ("nvidia/segformer-b5-finetuned-ade-640-640",
           "f9c3b1ce7ea1e7795e36d28aa2220654f8de78a4", 51.0, (640, 640)),
}
SEGFORMER_CITYSCAPES = {
    "b0": ("nvidia/segformer-b0-finetuned-cityscapes-1024-1024",
           "21b3847fae21ddee674abd31129307b6a1235bd9", 76.2),
    "b1": ("nvidia/segformer-b1-finetuned-cityscapes-1024-1024",
           "c31a7ac717c52b6fbc69775bac333ff9408e095b", 78.5),
    "b2": ("nvidia/segformer-b2-finetuned-cityscapes-1024-1024",
           "c22ac7ec4097216a2248217f45bdd27c43b5dbe3", 81.0),
    "b3": ("nvidia/segformer-b3-finetuned-cityscapes-1024-1024",
           "20f8d24ffeab9430995e42e8d24675072351b13b", 81.7),
    "b4": ("nvidia/segformer-b4-finetuned-cityscapes-1024-1024",
           "76306c5b0d7433c06afe9576680ef19f8406bc9c", 82.3),
    "b5": ("nvidia/segformer-b5-finetuned-cityscapes-1024-1024",
           "b6e4c4143a549ac9cf16ee2ea222ab01959d9e04", 82.4),
}
SEGFORMER_PARAMETERS = {  # (150 classes, 19 classes)
    "b0": (3752694, 3719027), "b1": (13715798, 13682131), "b2": (27461974, 27361235),
    "b3": (47337814, 47237075), "b4": (64108374, 64007635), "b5": (84708694, 84607955)}


def _segformer_models() -> list[Preset]:
    presets = []
    for variant, (repo, revision, miou, size) in SEGFORMER_ADE20K.items():
        presets.append(Preset(
            name=f"segformer_{variant}.nvidia_ade20k",
            model={"name": f"segformer_{variant}", "num_classes": 150, "style": "hf"},
            part="model", source=_hub(repo, revision, "pytorch_model.bin"),
            converter="hf_segformer", normalization=IMAGENET, licence=NVIDIA_LICENCE,
            paper=_SEGFORMER, dataset="ADE20K (SceneParsing, 150 classes)", num_classes=150,
            class_names=classes.ADE20K, metric=f"ADE20K val mIoU {miou} (single scale)",
            parameters=SEGFORMER_PARAMETERS[variant][0], input_size=size,
            reference="transformers.SegformerForSemanticSegmentation"))
    for variant, (repo, revision, miou) in SEGFORMER_CITYSCAPES.items():
        presets.append(Preset(
            name=f"segformer_{variant}.nvidia_cityscapes",
            model={"name": f"segformer_{variant}", "num_classes": 19, "style": "hf"},
            part="model", source=_hub(repo, revision, "pytorch_model.bin"),
            converter="hf_segformer", normalization=IMAGENET, licence=NVIDIA_LICENCE,
            paper=_SEGFORMER, dataset="Cityscapes (fine, 19 classes)", num_classes=19,
            class_names=classes.CITYSCAPES,
            metric=f"Cityscapes val mIoU {miou} (single scale, 1024x1024 sliding window)",
            parameters=SEGFORMER_PARAMETERS[variant][1], input_size=(1024, 1024),
            reference="transformers.SegformerForSemanticSegmentation"))
    return presets


def _dpt_models() -> list[Preset]:
    return [Preset(
        name="dpt_vit_l16.intel_ade20k",
        model={"name": "dpt_vit_l16", "num_classes": 150, "layer_norm_epsilon": 1e-12},
        part="model",
        source=_hub("Intel/dpt-large-ade", "5ca59e2439c8340340eafccba2377816903f444a",
                    "pytorch_model.bin"),
        converter="hf_dpt", normalization=HALF, licence="Apache-2.0 (model card; DPT: MIT)",
        paper=_DPT, dataset="ADE20K (SceneParsing, 150 classes)", num_classes=150,
        class_names=classes.ADE20K, metric="ADE20K val mIoU 47.63, pixel accuracy 82.70",
        parameters=343960364, input_size=(480, 480),
        reference="transformers.DPTForSemanticSegmentation",
        note="transformers' port (layer-norm epsilon 1e-12); DPT-Large, with the auxiliary "
             "head")]


def _table() -> dict[str, Preset]:
    presets = [*_torchvision_encoders(), *_mmseg_v1c_encoders(), *_mit_encoders(),
               *_vit_encoders(), *_timm_encoders(), *_torchvision_models(),
               *_segformer_models(), *_dpt_models()]
    table = {preset.name: preset for preset in presets}
    if len(table) != len(presets):
        raise ValueError("two presets share a name")
    return table


PRESETS: dict[str, Preset] = _table()

# Registered models without whole-model weights here, and why (`python -m segjax.pretrained`
# lists them; a test checks that every registered model has a preset or a line here).
_AXIAL = tuple(f"axial_deeplab_{size}{kind}" for size in ("s", "m", "l", "xl")
               for kind in ("", "_panoptic"))
UNAVAILABLE: tuple[tuple[tuple[str, ...], str], ...] = (
    (_AXIAL + ("panoptic_deeplab_resnet50",),
     "the authors' weights are TensorFlow checkpoints (google-research/deeplab2); segjax "
     "converts PyTorch state dicts only"),
    (("fcn8s", "fcn16s", "fcn32s"),
     "the Caffe-ported weights (wkentaro/pytorch-fcn) are on Google Drive with an MD5 only "
     "(no stable HTTPS URL or SHA-256) and expect BGR 0-255 input; start from vgg16.tv_in1k, "
     "as the paper started from ImageNet VGG-16"),
    (("deeplabv1_largefov", "deeplabv2_resnet101"),
     "the papers' weights are Caffe models, with no PyTorch release in this layout; "
     "deeplabv2_resnet101 starts from resnet101.tv_in1k"),
    (("deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3plus_resnet50",
      "deeplabv3plus_resnet101", "deeplabv3plus_mobilenetv2", "deeplabv3plus_xception65",
      "pspnet_resnet50"),
     "no trained release in these models' layouts (mmsegmentation's checkpoints have "
     "another, which no converter here maps); start from the encoder presets "
     "(resnet*.tv_in1k, resnet50_v1c.mmseg_in1k, mobilenetv2.tv_in1k, xception65.tf_in1k), "
     "or use the tv_* models with torchvision's COCO weights"),
    (("unet_resnet34", "unetplusplus_resnet34", "linknet_resnet34", "fpn_resnet34",
      "fpn_resnet50", "pspnet_resnet34", "pan_resnet34", "manet_resnet34",
      "upernet_resnet34"),
     "smp releases no trained decoders for these (smp-hub's segmentation models are "
     "SegFormers with the NVIDIA weights already here, and UPerNet-ConvNeXt and DPT on "
     "timm's ViT, whose encoders are not registered); start from resnet34.tv_in1k / "
     "resnet50.tv_in1k"),
    (("unet", "unetplusplus", "linknet_resnet18", "nonewnet"),
     "no public weights for the papers' networks"),
    (("cgnet",), "the official weights are linked only through cloud-drive pages (no stable "
                 "HTTPS URL or hash)"),
    (("dpt_vit_b16", "dpt_hybrid"),
     "DPT's ADE20K release on the Hub is DPT-Large only (Intel/dpt-large-ade); the official "
     "DPT-Hybrid ADE20K file is a GitHub release in the isl-org/DPT layout, which no "
     "converter here maps; start from dpt_vit_b16.google_in21k_ft_in1k / "
     "dpt_vit_hybrid.timm_in21k_ft_in1k"),
)


def names() -> list[str]:
    return sorted(PRESETS)


def get(name: str) -> Preset:
    """The preset called `name` ('preset:' prefix allowed); unknown names list the valid ones."""
    key = name[len("preset:"):] if name.startswith("preset:") else name
    try:
        return PRESETS[key]
    except KeyError:
        raise KeyError(f"unknown preset {key!r}; presets: {', '.join(names())}") from None
