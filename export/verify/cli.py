"""`python -m export verify BUNDLE`: the parity check's command and the --threshold / --runtimes flags the pipeline shares."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.cli_args import TASK_DATA_FLAGS, add_data_argument, add_task_data_arguments, task_of_args
from export.cli import bundle_log


def add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", action="append", metavar="[KIND.]FIELD=VALUE",
                        help="override a parity threshold, e.g. tflite/fp16.max_abs_diff=2e-2 or min_agreement=99.5 (all kinds); "
                             "fields: max_abs_diff, max_scaled_diff (max abs diff over PyTorch's largest |value|), min_agreement (percent), "
                             "max_metric_gap (points); VALUE 'none' turns a check off")


def add_runtimes_argument(parser: argparse.ArgumentParser, arm_examples: int = 200) -> None:
    from export.verify.runtimes import BY_NAME

    parser.add_argument("--runtimes", nargs="+", metavar="NAME",
                        help=f"TFLite interpreters to run every .tflite through, each in its own environment: {', '.join(BY_NAME)}, "
                             "or all (default: every one `make setup` installed; a missing one is marked 'not installed'). The "
                             "-arm64- ones are the aarch64 builds phones run, under QEMU user mode as the CPU model in their name")
    parser.add_argument("--arm-examples", type=int, default=arm_examples, metavar="N",
                        help=f"eval examples each emulated ARM64 LiteRT row runs, on the file the app opens there (default "
                             f"{arm_examples}; the old interpreter's row, whose file computes in float, a tenth of them): under "
                             "QEMU a hybrid int8 student took about 0.6 s per SST-2 sentence")


def check_arm_examples(value: int) -> None:
    """Refuse an --arm-examples below 1 in one line, before anything heavy is imported."""
    from mobile_app.runtime.errors import UserError

    if value < 1:
        raise UserError(f"--arm-examples must be at least 1, got {value}")


def add_matrix_argument(parser: argparse.ArgumentParser, default: str) -> None:
    from export.verify.matrix import MATRIX_CHOICES

    parser.add_argument("--matrix", choices=MATRIX_CHOICES, default=default,
                        help="all: every .tflite on every x86-64 runtime; shipped: on each runtime the file the app opens there, "
                             f"the other .tflite files on the first (ai-edge-litert) only (default: {default}). ARM64 runtimes "
                             "always run only the file the app opens there")


def check_runtime_names(names: list[str] | None) -> None:
    """Refuse an unknown --runtimes name before anything heavy is imported."""
    from mobile_app.runtime.errors import UserError
    from export.verify.runtimes import BY_NAME

    unknown = [name for name in names or [] if name not in BY_NAME and name != "all"]
    if unknown:
        raise UserError(f"unknown runtime {', '.join(unknown)}; choose from {', '.join(BY_NAME)} (or all)")


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def threshold_overrides(flags: list[str] | None) -> dict:
    """{kind: {field: value}} from repeated --threshold flags."""
    from export.verify.parity import parse_threshold_flag

    overrides: dict[str, dict] = {}
    for flag in flags or []:
        kind, name, value = parse_threshold_flag(flag)
        overrides.setdefault(kind, {})[name] = value
    return overrides


def check_verify(args: argparse.Namespace) -> None:
    """Runtime names and the eval data flags, checked before anything heavy is imported."""
    check_runtime_names(args.runtimes)
    check_arm_examples(args.arm_examples)
    threshold_overrides(args.threshold)
    args.task_spec = None
    if any(getattr(args, flag, None) is not None for flag in TASK_DATA_FLAGS):
        from mobile_app.runtime.bundle import read_manifest

        manifest = read_manifest(args.bundle_dir)
        spec = task_of_args(args, name=manifest["task"])
        args.task_spec = spec if spec.is_qa else spec.with_labels(args.labels or manifest["labels"])


def run_verify(args: argparse.Namespace) -> int:
    from export.verify.verify import verify_bundle
    from mobile_app.runtime.contract import PARITY_MD
    from export.verify.report import matrix_rows, parity_rows, runtime_lines

    report = verify_bundle(args.bundle_dir, data_dir=args.data_dir, student_dir=args.student, max_examples=args.max_examples,
                           thresholds=threshold_overrides(args.threshold), runtimes=args.runtimes,
                           matrix=args.matrix, task=args.task_spec, student_mismatch_ok=args.student_mismatch_ok,
                           arm_examples=args.arm_examples)
    if report.get("student_mismatch"):
        print(f"note: proved against {args.student}, not the student the bundle was exported from (--student-mismatch-ok)")
    print(f"PyTorch student {report['metric_name']} {report['reference']['metric']:.2f} on {report['examples']} eval examples")
    for line in _table(parity_rows(report)) + ["", "artifact x runtime (result, median latency per example):"] + _table(matrix_rows(report)):
        print(line)
    for line in runtime_lines(report):
        print(line)
    print(f"report: {Path(args.bundle_dir) / PARITY_MD}")
    for failure in report["failures"]:
        print(f"parity FAILED: {failure}", file=sys.stderr)
    return 0 if report["passed"] else 1


def add_verify_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("verify", help="prove each bundle artifact answers like the PyTorch student on real eval data")
    parser.add_argument("bundle_dir", type=Path)
    add_data_argument(parser)
    parser.add_argument("--student", type=Path, help="the PyTorch student (default: the folder recorded in bundle.json)")
    parser.add_argument("--student-mismatch-ok", action="store_true",
                        help="allow a --student other than the one the bundle was exported from (the report says so)")
    parser.add_argument("--max-examples", type=int, metavar="N", help="first N eval examples (default: all of the eval split)")
    add_threshold_argument(parser)
    add_runtimes_argument(parser)
    add_matrix_argument(parser, default="all")
    add_task_data_arguments(parser, train=False)
    parser.set_defaults(func=run_verify, check=check_verify, log_file=bundle_log)
    return parser
