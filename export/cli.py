"""`python -m export {tflite,verify,coreml,pipeline} ...`: one entry point for the export stage.

Each subcommand registers itself with an `add_<name>_parser(subparsers)` that sets `func(args) -> exit code`.
`tflite` and `verify` live here; the others are listed in SUBCOMMAND_MODULES and registered when their
module is present. Bad input prints `error: <one line>` and exits 2; a failed parity threshold exits 1.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path

from distill.errors import UserError
from export.quantize import TFLITE_PRECISIONS
from mobile_app.runtime.bundle import BundleError

# (module, registration function) of subcommands written elsewhere, in help order.
SUBCOMMAND_MODULES = (("export.coreml", "add_coreml_parser"), ("export.pipeline.cli", "add_pipeline_parser"))


def run_tflite(args: argparse.Namespace) -> int:
    from export.tflite import export_tflite

    manifest = export_tflite(args.student_dir, args.out, precisions=args.precisions, task=args.task, data_dir=args.data_dir,
                             buckets=args.buckets, calibration_examples=args.calibration_examples)
    print(f"{'file':<32} {'precision':<13} {'size':>10} {'seconds':>8}")
    for entry in manifest["artifacts"]:
        if entry["format"] == "tflite":
            print(f"{entry['file']:<32} {entry['precision']:<13} {entry['size_bytes'] / 1e6:>8.2f}MB {entry['conversion_seconds']:>8.1f}")
    print(f"bundle: {Path(args.out).resolve()} (task {manifest['task']}, buckets {manifest['buckets']})")
    return 0


def add_tflite_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("tflite", help="convert a student to .tflite files (one per precision) in its task bundle")
    parser.add_argument("student_dir", type=Path, help="student model folder (safetensors, config, vocab)")
    parser.add_argument("--out", required=True, type=Path, help="bundle folder to create or update")
    parser.add_argument("--precisions", nargs="+", default=list(TFLITE_PRECISIONS), metavar="P", help=f"any of {' '.join(TFLITE_PRECISIONS)} (default: all)")
    parser.add_argument("--task", help="task name (default: from the student's distill_report.json)")
    parser.add_argument("--data-dir", type=Path, help="data folder; int8-static calibrates on its train split (default $TINYBERT_DATA_DIR)")
    parser.add_argument("--buckets", nargs="+", type=int, metavar="N", help="sequence-length buckets (default: the task's)")
    parser.add_argument("--calibration-examples", type=int, default=256, metavar="N", help="train examples for int8-static (default 256)")
    parser.set_defaults(func=run_tflite)
    return parser


def threshold_overrides(flags: list[str]) -> dict:
    from export.verify.parity import parse_threshold_flag

    overrides: dict[str, dict] = {}
    for flag in flags or []:
        kind, name, value = parse_threshold_flag(flag)
        overrides.setdefault(kind, {})[name] = value
    return overrides


def run_verify(args: argparse.Namespace) -> int:
    from export.verify.report import parity_rows
    from export.verify.check import PARITY_MD, verify_bundle

    report = verify_bundle(args.bundle_dir, data_dir=args.data_dir, student_dir=args.student, max_examples=args.max_examples,
                           thresholds=threshold_overrides(args.threshold))
    rows = parity_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"PyTorch student {report['metric_name']} {report['reference']['metric']:.2f} on {report['examples']} eval examples")
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    print(f"report: {Path(args.bundle_dir) / PARITY_MD}")
    for failure in report["failures"]:
        print(f"parity FAILED: {failure}", file=sys.stderr)
    return 0 if report["passed"] else 1


def add_verify_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("verify", help="prove each bundle artifact answers like the PyTorch student on real eval data")
    parser.add_argument("bundle_dir", type=Path)
    parser.add_argument("--data-dir", type=Path, help="data folder (default $TINYBERT_DATA_DIR)")
    parser.add_argument("--student", type=Path, help="the PyTorch student (default: the folder recorded in bundle.json)")
    parser.add_argument("--max-examples", type=int, metavar="N", help="first N eval examples (default: all of the eval split)")
    parser.add_argument("--threshold", action="append", metavar="[KIND.]FIELD=VALUE",
                        help="override a parity threshold, e.g. tflite/fp16.max_abs_diff=2e-2 or min_agreement=99.5 (all kinds); "
                             "fields: max_abs_diff, min_agreement (percent), max_metric_gap (points); VALUE 'none' turns a check off")
    parser.set_defaults(func=run_verify)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m export", description="Export a TinyBERT student to phone formats and prove parity.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_tflite_parser(subparsers)
    add_verify_parser(subparsers)
    for module_name, function in SUBCOMMAND_MODULES:
        if importlib.util.find_spec(module_name) is not None:
            getattr(importlib.import_module(module_name), function)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UserError, BundleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
