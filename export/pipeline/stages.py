"""The bodies of the pipeline's stages: thin calls into the modules that own each step.

distill.stages.run_task, export.tflite.export_tflite, export.coreml.export_coreml, export.verify.verify_bundle,
and the runtime's backend factory for the on-device latency. `StageFunctions` bundles them so a test can count the calls.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from export.pipeline.config import PipelineConfig
from mobile_app.runtime.bundle import read_manifest


def distill_student(task: str, cfg: PipelineConfig) -> Path:
    from distill.stages import run_task

    return Path(run_task(cfg.task_spec(task), cfg.data_dir, Path(cfg.run_dir) / task, preset=cfg.preset, teacher=cfg.teacher_for(task),
                         student=cfg.student, seed=cfg.seed, max_train_examples=cfg.max_train_examples,
                         max_eval_examples=cfg.max_eval_examples, overrides=cfg.distill_overrides, init=cfg.init,
                         force=cfg.force))


def export_tflite_bundle(task: str, student_dir: Path, bundle_dir: Path, cfg: PipelineConfig) -> dict:
    from export.tflite import export_tflite

    return export_tflite(student_dir, bundle_dir, precisions=list(cfg.precisions), task=task,
                         buckets=list(cfg.task_buckets(task)), data_dir=cfg.data_dir)


def export_coreml_bundle(task: str, student_dir: Path, bundle_dir: Path, cfg: PipelineConfig) -> dict:
    from export.coreml import export_coreml

    return export_coreml(student_dir, bundle_dir, variants=list(cfg.coreml_variants), task=task,
                         buckets=list(cfg.task_buckets(task)))


def verify_bundle(task: str, student_dir: Path, bundle_dir: Path, cfg: PipelineConfig) -> dict:
    from export.verify.verify import verify_bundle as verify

    return verify(bundle_dir, data_dir=cfg.data_dir, student_dir=student_dir, max_examples=cfg.verify_max_examples,
                  thresholds=cfg.verify_thresholds, runtimes=list(cfg.verify_runtimes) if cfg.verify_runtimes else None,
                  matrix=cfg.verify_matrix, arm_examples=cfg.verify_arm_examples)


def measure_latency(task: str, bundle_dir: Path, cfg: PipelineConfig) -> dict[str, dict]:
    """Median warm latency of each artifact through its on-device runner, one example at the largest bucket.

    TFLite runs through the phone's interpreter backend; Core ML only on macOS (on Linux its runner is the
    MIL evaluator, whose speed says nothing about a phone, so it is not timed).
    """
    import platform

    import numpy as np

    from mobile_app.runtime.backend_factory import open_entry

    manifest = read_manifest(bundle_dir)
    bucket = max(manifest["buckets"])
    ids = np.full(bucket, 1000, dtype=np.int32)
    ids[0], ids[-1] = 101, 102  # [CLS] ... [SEP] of the uncased vocab; the values do not change the timing
    mask, types = np.ones(bucket, dtype=np.int32), np.zeros(bucket, dtype=np.int32)
    found = {}
    for entry in manifest["artifacts"]:
        if entry["format"] == "coreml" and platform.system() != "Darwin":
            continue
        runner = open_entry(bundle_dir, manifest, entry)
        runner.run(ids, mask, types)  # warm-up
        times = []
        for _ in range(cfg.latency_runs):
            start = time.perf_counter()
            runner.run(ids, mask, types)
            times.append((time.perf_counter() - start) * 1000.0)
        found[entry["file"]] = {"latency_ms": float(np.median(times)), "latency_bucket": bucket, "runs": cfg.latency_runs}
    return found


@dataclass(frozen=True)
class StageFunctions:
    """The stage bodies; tests wrap them to count calls."""
    distill: Callable[[str, PipelineConfig], Path] = distill_student
    tflite: Callable[[str, Path, Path, PipelineConfig], dict] = export_tflite_bundle
    coreml: Callable[[str, Path, Path, PipelineConfig], dict] = export_coreml_bundle
    verify: Callable[[str, Path, Path, PipelineConfig], dict] = verify_bundle
    latency: Callable[[str, Path, PipelineConfig], dict] = measure_latency
