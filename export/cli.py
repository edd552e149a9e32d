"""`tinybert-mobile export tflite|coreml ...` (`python -m export tflite ...`): the converters' commands.

Each registers itself with `func(args) -> exit code`, `check(args)` (flags only, before torch is imported) and
`log_file(args)` (BUNDLE.log beside the bundle); export/commands.py runs them. The parsers import nothing heavy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from distill.cli_args import add_data_argument
from export.quantize import parse_profiles
from mobile_app.runtime.contract import COREML_VARIANTS, DEFAULT_COREML_VARIANTS, DEFAULT_TFLITE_PRECISIONS, TFLITE_NEEDS_FIELD, TFLITE_PRECISIONS


def bundle_log(args: argparse.Namespace) -> Path:
    """Where a bundle command's library warnings go: BUNDLE.log beside the bundle."""
    bundle = Path(getattr(args, "bundle_dir", None) or args.out)
    return bundle.parent / f"{bundle.name}.log"


def check_tflite(args: argparse.Namespace) -> None:
    parse_profiles(args.min_runtime)


def run_tflite(args: argparse.Namespace) -> int:
    from export.tflite import export_tflite

    manifest = export_tflite(args.student_dir, args.out, precisions=args.precisions, task=args.task, data_dir=args.data_dir,
                             buckets=args.buckets, calibration_examples=args.calibration_examples, min_runtime=args.min_runtime)
    print(f"{'file':<40} {'precision':<13} {'size':>10} {'seconds':>8}  needs")
    for entry in manifest["artifacts"]:
        if entry["format"] == "tflite":
            needs = entry.get(TFLITE_NEEDS_FIELD, {})
            print(f"{entry['file']:<40} {entry['precision']:<13} {entry['size_bytes'] / 1e6:>8.2f}MB {entry['conversion_seconds']:>8.1f}"
                  f"  TFLite >= {needs.get('min_runtime', '?')} ({needs.get('min_runtime_for', 'not recorded')})")
    print(f"bundle: {Path(args.out).resolve()} (task {manifest['task']}, buckets {manifest['buckets']})")
    return 0


def _add_student_and_bundle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("student_dir", type=Path, help="student model folder (config.json, safetensors, tokenizer)")
    parser.add_argument("--out", required=True, type=Path, help="task bundle folder to create or update")
    parser.add_argument("--task", help="task name (default: from the student's distill_report.json)")
    parser.add_argument("--buckets", nargs="+", type=int, metavar="N", help="sequence-length buckets (default: the task's)")


def add_tflite_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("tflite", help="convert a student to .tflite files (one per precision) in its task bundle")
    _add_student_and_bundle(parser)
    parser.add_argument("--precisions", nargs="+", default=list(DEFAULT_TFLITE_PRECISIONS), metavar="P",
                        help=f"any of {' '.join(TFLITE_PRECISIONS)} (default: {' '.join(DEFAULT_TFLITE_PRECISIONS)})")
    add_data_argument(parser)
    parser.add_argument("--calibration-examples", type=int, default=256, metavar="N", help="train examples for int8-static (default 256)")
    parser.add_argument("--min-runtime", metavar="VERSION", nargs="+", default=None,
                        help="the runtime profiles to make files for: the oldest TFLite each file must run on (default: 2.8 "
                             "litert). 2.8 is python-for-android's tflite-runtime and the oldest of the verify matrix; 'litert' "
                             "(LiteRT 2.3.0) adds per-channel hybrid int8 on int8 kernels and int8-static, which profiles before "
                             "2.15 cannot have; each interpreter opens the newest file it can run")
    parser.set_defaults(func=run_tflite, check=check_tflite, log_file=bundle_log)
    return parser


def run_coreml(args: argparse.Namespace) -> int:
    from export.coreml import export_coreml

    manifest = export_coreml(args.student_dir, args.out, variants=args.variants, task=args.task, buckets=args.buckets, flexible=args.flexible)
    print(f"{'file':<32} {'precision':<11} {'size MB':>8} {'convert s':>9}")
    for a in (a for a in manifest["artifacts"] if a["format"] == "coreml"):
        print(f"{a['file']:<32} {a['precision']:<11} {a['size_bytes'] / 1e6:>8.2f} {a['conversion_seconds']:>9.1f}")
    print(f"bundle: {args.out}")
    return 0


def add_coreml_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("coreml", help="convert a student to Core ML (.mlpackage) variants in its task bundle",
                                   description="Core ML export: the student as ML Program (.mlpackage) variants in the task bundle.")
    _add_student_and_bundle(parser)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_COREML_VARIANTS), choices=COREML_VARIANTS,
                        help=f"precisions to build (default: {' '.join(DEFAULT_COREML_VARIANTS)})")
    parser.add_argument("--range", dest="flexible", action="store_const", const="range", default="enumerated",
                        help="flexible length as a range up to the longest bucket (iOS 16) instead of enumerated buckets (iOS 18)")
    parser.set_defaults(func=run_coreml, log_file=bundle_log)
    return parser


def add_export_commands(subparsers) -> None:
    """tflite and coreml: the converters."""
    add_tflite_parser(subparsers)
    add_coreml_parser(subparsers)
