"""`python -m export pipeline` (and the `tinybert-mobile` script): flags -> PipelineConfig -> run -> exit code.

Exit codes: 0 all good; 1 a parity threshold failed (the task and artifact are named); 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distill.cli import parse_student
from distill.errors import UserError
from distill.settings import DEFAULT_INIT_HELP, PRESET_NAMES
from export.coreml import COREML_VARIANTS
from export.pipeline.run import run_pipeline
from export.pipeline.config import DEFAULT_COREML_VARIANTS, DEFAULT_TFLITE_PRECISIONS, DEFAULT_VERIFY_EXAMPLES, PipelineConfig
from export.quantize import TFLITE_PRECISIONS
from mobile_app.runtime.bundle import BundleError
from mobile_app.runtime.contract import TASK_NAMES


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--data-dir", required=True, type=Path, help="folder holding sst2/, sms_spam/, squad_v1/")
    parser.add_argument("--out", required=True, type=Path, help="run folder: models, stage cache, report.md/.html")
    parser.add_argument("--bundles", required=True, type=Path, help="bundles for the app: BUNDLES/<task>/bundle.json")
    parser.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), metavar="TASK", help=f"any of {' '.join(TASK_NAMES)} (default: all)")
    parser.add_argument("--preset", choices=PRESET_NAMES, default="quick", help="distillation schedule (default quick)")
    parser.add_argument("--teacher", help="teacher model folder or hub id (default: the offline MiniLM base, head fine-tuned)")
    parser.add_argument("--student", default="tinybert-4l-312d", type=parse_student,
                        help="student preset (default tinybert-4l-312d) or LAYERSxHIDDENxHEADSxINTERMEDIATE, e.g. 2x64x4x128")
    parser.add_argument("--init", default=None, help="student initialisation: random, general (short general distillation), "
                        "teacher-layers (the fine-tuned teacher with layers dropped, narrowed to a narrower student's "
                        "width) or a general TinyBERT folder / hub id; " + DEFAULT_INIT_HELP)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precisions", nargs="+", default=list(DEFAULT_TFLITE_PRECISIONS), metavar="P",
                        help=f"TFLite precisions, any of {' '.join(TFLITE_PRECISIONS)}")
    parser.add_argument("--coreml-variants", nargs="+", default=list(DEFAULT_COREML_VARIANTS), metavar="V",
                        help=f"Core ML variants, any of {' '.join(COREML_VARIANTS)}")
    parser.add_argument("--skip-coreml", action="store_true", help="build TFLite artifacts only")
    parser.add_argument("--force", action="store_true", help="ignore the stage cache and redo every stage")
    parser.add_argument("--max-train-examples", type=int, help="cap the training split (quick experiments)")
    parser.add_argument("--max-eval-examples", type=int, help="cap the evaluation split for distillation metrics")
    parser.add_argument("--verify-max-examples", type=int, default=DEFAULT_VERIFY_EXAMPLES, metavar="N",
                        help=f"parity on the first N eval examples (default {DEFAULT_VERIFY_EXAMPLES}; all when the split is smaller)")
    parser.add_argument("--threshold", action="append", metavar="[KIND.]FIELD=VALUE",
                        help="override a parity threshold as `python -m export verify --threshold` does, e.g. tflite/fp16.max_abs_diff=2e-2")
    parser.set_defaults(func=run_from_args)
    return parser


def add_pipeline_parser(subparsers) -> argparse.ArgumentParser:
    """Register `pipeline` on the `python -m export` subcommands (export/cli.py calls this)."""
    parser = subparsers.add_parser("pipeline", help="distil, export, verify and report every task in one go",
                                   description="Per task: distillation -> TFLite -> Core ML -> parity -> latency; bundles for the app and a report.")
    return add_pipeline_arguments(parser)


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    from export.cli import threshold_overrides  # the verify subcommand's --threshold parsing, shared

    return PipelineConfig(data_dir=args.data_dir, run_dir=args.out, bundles_dir=args.bundles, tasks=tuple(args.tasks),
                          preset=args.preset, teacher=args.teacher, student=args.student, init=args.init, seed=args.seed,
                          precisions=tuple(args.precisions), coreml_variants=tuple(args.coreml_variants),
                          skip_coreml=args.skip_coreml, force=args.force, max_train_examples=args.max_train_examples,
                          max_eval_examples=args.max_eval_examples, verify_max_examples=args.verify_max_examples,
                          verify_thresholds=threshold_overrides(args.threshold) or None)


def run_from_args(args: argparse.Namespace) -> int:
    """The `pipeline` subcommand's handler."""
    try:
        cfg = config_from_args(args)
    except (UserError, BundleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_and_report(cfg)


def run_and_report(cfg: PipelineConfig) -> int:
    """Run the pipeline and print its summary table; the exit code: 0 good, 1 parity failed, 2 bad input."""
    from export.pipeline.report import console_summary

    try:
        summary = run_pipeline(cfg)
    except (UserError, BundleError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(console_summary(summary))
    print(f"\nreport: {summary['report']['markdown']} and {summary['report']['html']}")
    for task in summary["tasks"]:
        for artifact in task["artifacts"]:
            if artifact.get("passed") is False:
                for failure in artifact.get("failures") or [f"{artifact['name']}: a parity threshold failed"]:
                    print(f"parity FAILED (task {task['task']}): {failure}", file=sys.stderr)
    return summary["exit_code"]


def main(argv: list[str] | None = None) -> int:
    parser = add_pipeline_arguments(argparse.ArgumentParser(prog="tinybert-mobile", description=__doc__.splitlines()[0]))
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
