"""The ``pmq`` command line. Every user error becomes one stderr line and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hwsim.errors import HwsimError
from pmq.defaults import DEFAULT_BIT_CHOICES, DEFAULT_CALIBRATION_IMAGES
from pmq.errors import PMQError

FLAGS = {"out_dir": "--out", "checkpoint": "--checkpoint", "data_dir": "--data", "cache_dir": "$PMQ_CACHE_DIR",
         "pretrained": "--pretrained", "observer": "--observer", "results_dir": "RUN_DIR", "limit": "--limit",
         "model": "--model", "input_size": "--input-size", "accelerator": "--accelerator",
         "objective": "--objective", "second_objective": "--also", "bits": "--bits",
         "allocation_file": "--allocation", "space": "--space", "budgets": "--budgets", "executor": "--executor",
         "scheduler": "--scheduler", "method": "--method"}
"""Library parameter names (``PMQError.param``) → the flag a user typed."""
METAVARS = {"out": "DIR", "data": "DIR", "limit": "N", "checkpoint": "CKPT", "init": "CKPT", "bits": "WxAy",
            "allocation": "FILE", "calibration_images": "N", "calibration_seed": "S", "accelerator": "NAME|YAML",
            "model": "NAME", "workload": "CSV", "space": "SPACE.yaml", "batch": "N", "epochs": "N", "seed": "S",
            "lr": "LR", "warmup_epochs": "E", "workers": "N", "scheduler": "ADDRESS", "budget": "X",
            "budgets": "B", "bit_choices": "2,3,4,6,8", "objective": "OBJECTIVE", "also": "OBJECTIVE",
            "metric": "pmq|hawq|nuclear", "patchwise_objective": "OBJECTIVE", "patchwise_budget": "X",
            "executor": "local|dask", "method": "estimate|simulate", "input_size": "C,H,W"}
"""How each option's value is shown in usage lines and the README synopsis."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit 2 (not the usage block), and wraps
    usage at a fixed width (so the README synopsis does not depend on the terminal)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        kwargs.setdefault("formatter_class", lambda prog: argparse.HelpFormatter(prog, width=100))
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"pmq: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(2)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _input_size(text: str) -> tuple[int, ...]:
    try:
        size = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,224,224), got {text!r}") from None
    if len(size) != 3 or min(size) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive sizes C,H,W (e.g. 3,224,224), got {text!r}")
    return size


def cmd_train(args: argparse.Namespace) -> int:
    from pmq.train import TrainConfig, train_demo

    config = TrainConfig(epochs=args.epochs, seed=args.seed, lr=args.lr, augment=not args.no_augment,
                         warmup_epochs=args.warmup_epochs)
    record = train_demo(args.out, config, args.data, args.init)
    print(f"wrote {record['checkpoint']} (test top-1 {100 * record['test_top1']:.2f}%)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from pmq.jobs import EvaluateJob, evaluate

    job = EvaluateJob(_model_spec(args), args.bits, args.allocation, args.data, args.calibration_images,
                      args.observer, args.calibration_seed, args.limit, progress=not args.json)
    run = evaluate(job)
    result = run.result
    if args.json:
        print(json.dumps({"top1": result.top1, "size_mb": result.size_mb, "gbops": result.gbops}))
    else:
        print(f"{run.model_tag} at {run.setting}: top-1 {100 * result.top1:.2f}% on {result.images} images, "
              f"{result.size_mb:.3f} MB, {result.gbops:.3f} GBOPs")
    return 0


def _model_spec(args: argparse.Namespace):  # noqa: ANN202
    from pmq.jobs import ModelSpec

    return ModelSpec(args.model, args.checkpoint, args.pretrained, args.input_size)


def cmd_simulate(args: argparse.Namespace) -> int:
    from pmq.jobs import SimulateJob, simulate

    job = SimulateJob(args.accelerator, _model_spec(args) if args.model else None, args.workload, args.bits,
                      args.allocation, args.batch, args.mapping)
    run = simulate(job, args.out)
    s = run.summary
    if args.json:
        keys = ("cycles", "latency_s", "energy_pj", "bops", "utilization")
        printed = {key: getattr(s, key) for key in keys}
        print(json.dumps(printed | ({"per_op": str(run.folder / s.per_op_file)} if run.folder else {})))
    else:
        where = run.folder or "not written: pass --out DIR to keep per_op.csv and run.json"
        print(f"{run.label} on {s.accelerator}: {s.cycles:,} cycles, {1e3 * s.latency_s:.3f} ms, "
              f"{s.energy_pj / 1e6:.2f} uJ, {s.bops / 1e9:.2f} GBOPs, "
              f"utilisation {100 * s.utilization:.1f}%  ({where})")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from pmq.jobs import SearchJob, search

    job = SearchJob(_model_spec(args), args.objective, args.budget, args.accelerator, args.metric, args.also,
                    args.bit_choices, args.data, args.calibration_images, args.limit, args.patchwise,
                    args.patchwise_objective, args.patchwise_budget, progress=not args.json)
    s, out = search(job, args.out)
    m = s.measured
    if args.json:
        print(json.dumps({"top1": m.top1, "size_mb": m.size_mb, "gbops": m.gbops, "latency_s": m.latency_s,
                          "energy_pj": m.energy_pj, "omega": s.omega,
                          "allocation": str(out / s.allocation_file)}))
        return 0
    print(f"{s.model_tag} [{s.metric}, {s.objective} <= {s.budget}]: top-1 {100 * m.top1:.2f}%, "
          f"{m.size_mb:.3f} MB, {m.gbops:.3f} GBOPs, {1e3 * m.latency_s:.3f} ms and "
          f"{m.energy_pj / 1e6:.2f} uJ on {s.accelerator}; frontier of {s.frontier_points} points  ({out})")
    if s.patchwise is not None:
        p = s.patchwise
        print(f"patch-wise [{p.objective} <= {p.budget}]: {p.cost / p.base_cost:.4f}x the base's "
              f"{p.objective}; layers: {', '.join(f'{k} {v}' for k, v in p.layers.items()) or 'none'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pmq.demo import run_demo

    report = run_demo(args.out, limit=args.limit)
    print(f"wrote {report.parent} (figures in {report.parent / 'figures'}); report: {report}")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pmq.plots import plot_results

    written = plot_results(args.results_dir, fmt=args.format)
    print("\n".join(str(path) for path in written))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from pmq.jobs import sweep_and_plot
    from pmq.sweep import SweepConfig, SweepSettings

    settings = SweepSettings(args.objective, args.budgets, args.executor, args.scheduler, args.workers, args.method,
                             progress=not args.json)
    run = sweep_and_plot(args.space, args.out, SweepConfig(
        args.model, args.checkpoint, args.pretrained, args.data, args.metric, args.bit_choices,
        args.calibration_images, limit=args.limit, settings=settings, input_size=args.input_size))
    result, figure = run.result, run.figure
    if args.json:
        print(json.dumps({"table": str(result.table), "pareto": str(result.pareto), "figure": str(figure),
                          "points": len(result.rows), "failed": result.failed,
                          "computed_designs": result.computed_designs, "wall_s": result.wall_s}))
    else:
        print(f"{len(result.rows)} points ({result.failed} failed, {result.computed_designs} designs computed now) "
              f"in {result.wall_s:.1f} s: {result.table}, Pareto set {result.pareto}, figure {figure}")
    return 0


def _bit_choices(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(sorted({int(b) for b in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated bits like 2,4,8, got {text!r}") from None
    if not bits or bits[0] < 2 or bits[-1] > 8:
        raise argparse.ArgumentTypeError(f"bits must lie in 2..8, got {text!r}")
    return bits


_MODEL_HELP = "'demo', a timm model name, or package.module:function (returns any nn.Module)"
_INPUT_SIZE_HELP = "C,H,W of one input image (default: the model's pretrained_cfg['input_size'])"


def _model_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help=_MODEL_HELP)
    p.add_argument("--checkpoint", type=Path, help="weights to load instead of the default")
    p.add_argument("--pretrained", action="store_true", help="load timm's pretrained weights (from its cache)")
    p.add_argument("--input-size", type=_input_size, help=_INPUT_SIZE_HELP)


def _bits_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--bits", help="uniform setting for every component, e.g. W4A8, W8A8 or float")
    group.add_argument("--allocation", type=Path, help="BitAllocation JSON (e.g. written by `pmq search`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pmq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="the main job end to end on the bundled demo ViT: results, figures, report")
    p.add_argument("--out", type=Path, default=Path("results") / "demo", help="results folder (default results/demo)")
    p.add_argument("--limit", type=_positive_int, help="test images per evaluation (default 2000 of the 10k)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("train", help="train the demo ViT on Fashion-MNIST")
    p.add_argument("--data", type=Path, help="folder with the Fashion-MNIST IDX files")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (cosine schedule)")
    p.add_argument("--warmup-epochs", type=float, help="linear warm-up (default 1, or 0 with --init)")
    p.add_argument("--no-augment", action="store_true", help="no random shifts/flips (e.g. for a final fine-tune)")
    p.add_argument("--init", type=Path, help="continue from this checkpoint instead of random weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="checkpoint path (default: the bundled demo checkpoint)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="top-1, model size and BOPs of a model at a bit allocation")
    _model_arguments(p)
    _bits_arguments(p)
    p.add_argument("--data", type=Path, help="dataset folder (Fashion-MNIST IDX files, or ImageNet layout)")
    p.add_argument("--limit", type=_positive_int, help="evaluate on this many test images (seeded subset)")
    p.add_argument("--calibration-images", type=_positive_int, default=DEFAULT_CALIBRATION_IMAGES, help="train images for calibration")
    p.add_argument("--observer", choices=("minmax", "percentile", "mse"),
                   help="quantize activations per tensor with static ranges fitted by this observer on the "
                   "calibration images (default: per-token dynamic ranges, which need no observer)")
    p.add_argument("--calibration-seed", type=int, default=0, help="seed of the calibration image draw")
    p.add_argument("--json", action="store_true", help="print one JSON object: top1, size_mb, gbops")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("simulate", help="latency, energy and BOPs of a model or GEMM topology on an accelerator")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=_MODEL_HELP)
    source.add_argument("--workload", type=Path, help="SCALE-Sim-style GEMM topology CSV (Layer,M,N,K,)")
    p.add_argument("--checkpoint", type=Path, help="weights to load instead of the default")
    p.add_argument("--pretrained", action="store_true", help="load timm's pretrained weights (from its cache)")
    p.add_argument("--input-size", type=_input_size, help=_INPUT_SIZE_HELP)
    p.add_argument("--accelerator", required=True, help="preset name (int8_systolic, bitfusion, stripes, loom) or YAML")
    _bits_arguments(p)
    p.add_argument("--batch", type=_positive_int, default=1)
    p.add_argument("--mapping", choices=("search", "reference"), default="search",
                   help="search: hwsim's mapper; reference: the preset's reference simulator's own mapping "
                        "(bitfusion: BitFusion's simulator, int8_systolic: SCALE-Sim's folds)")
    p.add_argument("--out", type=Path, help="folder for per_op.csv and run.json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_simulate)

    p = sub.add_parser("search", help="PMQ: sensitivity + exact Pareto frontier against a cost, under a budget")
    _model_arguments(p)
    p.add_argument("--accelerator", default="bitfusion", help="preset name or YAML (prices latency/energy)")
    p.add_argument("--objective", required=True, help="size, bops, latency or energy")
    p.add_argument("--also", help="a second cost objective for a 3-D frontier (the budget applies to --objective)")
    p.add_argument("--budget", required=True, help="absolute (e.g. 2.5e9 for bops) or relative to a uniform "
                   "setting (e.g. 0.5x:W8A8); units: MB, GBOPs... are not used, give base units or a ratio")
    p.add_argument("--metric", default="pmq", help="sensitivity metric: pmq, hawq or nuclear")
    p.add_argument("--bit-choices", type=_bit_choices, default=DEFAULT_BIT_CHOICES, help="candidate bits, e.g. 2,3,4,6,8")
    p.add_argument("--data", type=Path, help="dataset folder (Fashion-MNIST IDX files, or ImageNet layout)")
    p.add_argument("--calibration-images", type=_positive_int, default=DEFAULT_CALIBRATION_IMAGES, help="train images for calibration")
    p.add_argument("--limit", type=_positive_int, help="evaluate the chosen allocation on this many test images")
    p.add_argument("--patchwise", action="store_true",
                   help="then reallocate token activation bits per layer (patch-wise) on the chosen allocation")
    p.add_argument("--patchwise-objective", help="cost the patch-wise step minimises under (default: --objective; bops when that is size)")
    p.add_argument("--patchwise-budget",
                   help="patch-wise budget: a share of the chosen allocation's own cost (0.9x), 0.5x:W8A8, or absolute "
                   "(default: 0.9x, or the cheapest patch-wise setting when 0.9x is below it)")
    p.add_argument("--out", type=Path, help="results folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser("sweep", help="co-design: accelerator parameters x bit budgets, resumable, local or Dask")
    _model_arguments(p)
    p.add_argument("--space", type=Path, required=True, help="YAML: base accelerator(s), parameter grid/sample, budgets")
    p.add_argument("--objective", help="latency or energy (default: the space file's)")
    p.add_argument("--budgets", nargs="+", help="bit budgets, e.g. 0.25x:W8A8 0.5x:W8A8 (default: the space file's)")
    p.add_argument("--metric", default="pmq", help="sensitivity metric: pmq, hawq or nuclear")
    p.add_argument("--bit-choices", type=_bit_choices, default=DEFAULT_BIT_CHOICES, help="candidate bits, e.g. 2,3,4,6,8")
    p.add_argument("--data", type=Path, help="dataset folder (Fashion-MNIST IDX files, or ImageNet layout)")
    p.add_argument("--calibration-images", type=_positive_int, default=DEFAULT_CALIBRATION_IMAGES, help="train images for calibration")
    p.add_argument("--limit", type=_positive_int, help="evaluate each distinct allocation on this many test images")
    p.add_argument("--executor", default="local", help="local (process pool) or dask")
    p.add_argument("--scheduler", help="dask.distributed scheduler address (with --executor dask)")
    p.add_argument("--workers", type=_positive_int, help="local worker processes (default: all cores)")
    p.add_argument("--method", default="estimate", help="estimate (closed form) or simulate (event-driven) per point")
    p.add_argument("--out", type=Path, required=True, help="results folder (a killed sweep resumes from it)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=cmd_sweep)

    p = sub.add_parser("plot", help="paper figures (PDF/PNG/SVG) from a results folder, without re-running")
    p.add_argument("results_dir", type=Path, metavar="RUN_DIR", help="folder written by `pmq demo`, `search` or `sweep`")
    p.add_argument("--format", default="pdf", choices=("pdf", "png", "svg"), help="figure format (default pdf)")
    p.set_defaults(run=cmd_plot)
    for command in sub.choices.values():
        for action in command._actions:
            if action.option_strings and action.metavar is None and action.nargs != 0 and not action.choices:
                action.metavar = METAVARS.get(action.dest, action.dest.upper())
    return parser


def synopsis() -> str:
    """One usage block per command, from the parser itself (the README's "Command line" block)."""
    return "\n".join(command.format_usage().removeprefix("usage: ").replace(" [-h]", "").strip()
                     for command in _subcommands(build_parser()).values())


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    sys.stderr.write(f"pmq: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return run(args)
    except (PMQError, HwsimError) as exc:
        flag = FLAGS.get(getattr(exc, "param", None) or "")
        sys.stderr.write(f"pmq {args.command}: error: {flag + ': ' if flag else ''}{exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"pmq {args.command}: interrupted; finished result files are intact\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
