"""Command-line flags the inference entry points share (predict, evaluate, export, experiments).

    --workdir RUN | --checkpoint PATH    where the model comes from (exactly one)
    --conv_impl auto|native|cpu          overrides the run's config.runtime.conv_impl
    --tile --overlap --blend --scales --flip --crf --batch_size --crf_params
                                         override the run's config.eval

`checkpoint_path(args)` and `eval_options(config, args)` turn them into what
`segjax.evaluation` takes.
"""

from __future__ import annotations

import argparse

from segjax import evaluation, inference
from segjax.ops import conv


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """--workdir RUN or --checkpoint PATH (exactly one), and --conv_impl."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="a training run directory (its latest checkpoint)")
    source.add_argument("--checkpoint", help="a checkpoint directory or a variables checkpoint")
    parser.add_argument("--conv_impl", choices=conv.IMPLEMENTATIONS,
                        help="convolution formulation (default: the run's config.runtime)")


def checkpoint_path(args: argparse.Namespace) -> str:
    if bool(args.workdir) == bool(args.checkpoint):
        raise ValueError("give exactly one of --workdir or --checkpoint")
    return args.workdir or args.checkpoint


def restore(args: argparse.Namespace):
    """(model, variables, config) named by --workdir/--checkpoint, with --conv_impl applied."""
    return evaluation.restore(checkpoint_path(args), conv_impl=args.conv_impl)


def load_model(args: argparse.Namespace) -> evaluation.LoadedModel:
    """The model named by --workdir/--checkpoint, with --conv_impl applied."""
    return evaluation.load_model(checkpoint_path(args), conv_impl=args.conv_impl)


def comma_ints(text: str) -> tuple[int, ...]:
    """'512,512' -> (512, 512); '' -> ()."""
    return tuple(int(v) for v in text.split(",") if v)


def comma_floats(text: str) -> tuple[float, ...]:
    """'0.5,1,1.5' -> (0.5, 1.0, 1.5); '' -> ()."""
    return tuple(float(v) for v in text.split(",") if v)


def key_values(text: str) -> dict:
    """'a=1,b=x' -> {'a': 1.0, 'b': 'x'} (numbers as float, 'iterations' as int)."""
    result = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--crf_params: expected key=value, got {item!r}")
        try:
            result[key] = int(value) if key == "iterations" else float(value)
        except ValueError:
            result[key] = value
    return result


def add_eval_flags(parser: argparse.ArgumentParser) -> None:
    """Flags overriding config.eval (unset flags keep the run's values)."""
    parser.add_argument("--tile", type=comma_ints,
                        help="sliding-window tile, e.g. 512,512 ('' = whole)")
    parser.add_argument("--overlap", type=float, help="overlap fraction of the output tile")
    parser.add_argument("--blend", choices=inference.BLENDS)
    parser.add_argument("--scales", type=comma_floats, help="e.g. 0.5,0.75,1,1.25,1.5,1.75")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--crf", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--batch_size", type=int, help="tiles per device call")
    parser.add_argument("--crf_params", type=key_values,
                        help="CRF overrides, e.g. bi_w=5,bi_xy_std=50,iterations=5")


def eval_options(config, args: argparse.Namespace) -> inference.EvalOptions:
    """config.eval with the flags of `add_eval_flags` applied."""
    eval_config = config.get("eval")
    crf_params = None
    if args.crf_params:
        base = eval_config.get("crf_params", {}) if eval_config is not None else {}
        crf_params = {**(base.to_dict() if hasattr(base, "to_dict") else dict(base)),
                      **args.crf_params}
    return evaluation.options_from_config(
        config, tile=args.tile, overlap=args.overlap, blend=args.blend, scales=args.scales,
        flip=args.flip, crf=args.crf, batch_size=args.batch_size, crf_params=crf_params)
