"""The one-command pipeline: per task, distil -> TFLite -> Core ML -> verify -> latency, then a report.

Each stage is cached (export/pipeline/cache.py): its key hashes the data files, the result of the stage
it builds on, its settings and its code, and a stage whose key matches a completed record whose
outputs are still on disk is skipped. Settings live in export/pipeline/config.py, the stage bodies
(calls into distill.stages, export.tflite, export.coreml, export.verify.verify, export.verify.runners) in
export/pipeline/stages.py.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mobile_app.runtime.errors import UserError
from export.pipeline.config import PipelineConfig
from export.pipeline.stages import StageFunctions
from mobile_app.runtime.files import write_atomic
from export.pipeline.cache import StageCache, file_hashes, key_of, module_source, stage_code, stage_inputs
from mobile_app.runtime.bundle import read_manifest, sha256_path
from mobile_app.runtime.contract import PARITY_JSON
from export.writer_lock import bundle_writer
from mobile_app.runtime.files import source_identity

SUMMARY_NAME = "summary.json"

# Where each stage's code starts: the stage's code is every kit module these reach by importing (cache.stage_code),
# so an edit to any of them redoes the stage, and so does an edit to the stage bodies (export/pipeline/stages.py,
# hashed alone: its imports reach every stage). The verify worker runs as `python -m`, never imported: named here.
STAGE_ENTRIES = {
    "distill": ["distill.stages"],
    "tflite": ["export.tflite"],
    "coreml": ["export.coreml"],
    "verify": ["export.verify.verify", "export.verify.runtime_worker"],
    "latency": ["mobile_app.runtime.backend_factory"],
}


def code_of(stage: str) -> dict[str, str]:
    """The code a stage runs, as {module: sha256 of its source}."""
    return {**stage_code(STAGE_ENTRIES[stage]), "export.pipeline.stages": sha256_path(module_source("export.pipeline.stages"))}


# --- running one stage through the cache -----------------------------------------------------------


@dataclass
class StageOutcome:
    result: dict
    ran: bool
    seconds: float
    digest: str = field(default="")   # hash of the result: the downstream stages' upstream


def _digest(result: dict) -> str:
    return hashlib.sha256(json.dumps(result, sort_keys=True, default=str).encode()).hexdigest()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_stage(cache: StageCache, task: str, stage: str, inputs: dict, body: Callable[[], dict],
              still_valid: Callable[[dict], bool]) -> StageOutcome:
    """Skip the stage when a completed record has these inputs and its outputs are intact; else run it and record it."""
    record = cache.lookup(task, stage, key_of(inputs))
    if record is not None and still_valid(record["result"]):
        _log(f"[{task}] {stage}: up to date (done {record['completed_at']}), skipped")
        return StageOutcome(record["result"], ran=False, seconds=0.0, digest=_digest(record["result"]))
    _log(f"[{task}] {stage}: running ({cache.why_stale(task, stage, inputs)})")
    start = time.perf_counter()
    result = body()
    seconds = time.perf_counter() - start
    cache.complete(task, stage, inputs, result, seconds)
    _log(f"[{task}] {stage}: done in {seconds:.1f} s")
    return StageOutcome(result, ran=True, seconds=seconds, digest=_digest(result))


def _files_intact(bundle_dir: Path, files: dict[str, str]) -> bool:
    return all((bundle_dir / name).exists() and sha256_path(bundle_dir / name) == digest for name, digest in files.items())


def _artifact_files(bundle_dir: Path, fmt: str) -> dict[str, str]:
    """{file: sha256} of one format's artifacts in the bundle now."""
    manifest = read_manifest(bundle_dir)
    return {a["file"]: sha256_path(bundle_dir / a["file"]) for a in manifest["artifacts"] if a["format"] == fmt}


def _prune_bundle(bundle_dir: Path, keep: set[str]) -> None:
    """Drop artifacts this run did not produce (a change of precisions or student leaves none stale behind)."""
    from export.bundle import staged_bundle

    manifest = read_manifest(bundle_dir)
    stale = [a["file"] for a in manifest["artifacts"] if a["file"] not in keep]
    if not stale:
        return
    _log(f"[{manifest['task']}] bundle: removing artifacts not built by this run: {', '.join(stale)}")
    import shutil

    with staged_bundle(bundle_dir, manifest) as (stage, staged):
        staged["artifacts"] = [a for a in staged["artifacts"] if a["file"] in keep]
        staged.pop("parity", None)
        for name in stale:
            path = stage / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


# --- one task ----------------------------------------------------------------------------------------


def _data_hashes(task: str, cfg: PipelineConfig) -> dict[str, str]:
    spec = cfg.task_spec(task)
    root = Path(cfg.data_dir) if spec.builtin and cfg.data_dir is not None else None
    return file_hashes(spec.data.paths(root))


def _source_hash(source: str | None) -> str | None:
    """A local model folder (teacher, init checkpoint) counts by content; a hub id or a keyword by name."""
    if source and source not in ("random", "general") and Path(source).exists():
        return source_identity(source)
    return None


def matrix_runtimes(cfg: PipelineConfig) -> list[list]:
    """[name, installed] of the parity matrix's runtimes: installing one more environment redoes verify."""
    from export.verify.matrix import select_runtimes
    from export.verify.runtimes import is_installed

    return [[runtime.name, is_installed(runtime)] for runtime in select_runtimes(list(cfg.verify_runtimes or []))]


def run_task_pipeline(task: str, cfg: PipelineConfig, stages: StageFunctions, cache: StageCache) -> dict:
    """All stages of one task, holding its bundle's writer lock throughout; returns its section of the run summary."""
    with bundle_writer(Path(cfg.bundles_dir) / task, "running the pipeline"):
        return _task_stages(task, cfg, stages, cache)


def _task_stages(task: str, cfg: PipelineConfig, stages: StageFunctions, cache: StageCache) -> dict:
    data = _data_hashes(task, cfg)
    bundle_dir = Path(cfg.bundles_dir) / task
    outcomes: dict[str, StageOutcome] = {}

    distill_settings = {"preset": cfg.preset, "teacher": cfg.teacher_for(task), "teacher_sha256": _source_hash(cfg.teacher_for(task)),
                        "student": cfg.student, "init": cfg.init, "init_sha256": _source_hash(cfg.init), "seed": cfg.seed,
                        "max_train_examples": cfg.max_train_examples, "max_eval_examples": cfg.max_eval_examples,
                        "overrides": cfg.distill_overrides,
                        "definition": (cfg.definitions or {}).get(task)}

    def distill_body() -> dict:
        student_dir = Path(stages.distill(task, cfg)).resolve()
        return {"student_dir": str(student_dir), "weights": file_hashes({p.name: p for p in student_dir.glob("*.safetensors")})}

    outcomes["distill"] = run_stage(
        cache, task, "distill", stage_inputs("distill", task, settings=distill_settings, data=data, code=code_of("distill")),
        distill_body, lambda r: bool(r["weights"]) and file_hashes({n: Path(r["student_dir"]) / n for n in r["weights"]}) == r["weights"])
    student_dir = Path(outcomes["distill"].result["student_dir"])

    def export_stage(stage: str, settings: dict, body: Callable[[], dict], fmt: str) -> StageOutcome:
        def run_body() -> dict:
            body()
            return {"bundle_dir": str(bundle_dir.resolve()), "files": _artifact_files(bundle_dir, fmt)}

        inputs = stage_inputs(stage, task, settings=settings, upstream=[outcomes["distill"].digest], data=data, code=code_of(stage))
        return run_stage(cache, task, stage, inputs, run_body, lambda r: _files_intact(bundle_dir, r["files"]))

    outcomes["tflite"] = export_stage("tflite", {"precisions": list(cfg.precisions), "buckets": list(cfg.task_buckets(task))},
                                      lambda: stages.tflite(task, student_dir, bundle_dir, cfg), "tflite")
    if not cfg.skip_coreml:
        outcomes["coreml"] = export_stage("coreml", {"variants": list(cfg.coreml_variants), "buckets": list(cfg.task_buckets(task))},
                                          lambda: stages.coreml(task, student_dir, bundle_dir, cfg), "coreml")
    # Only what this run built stays in the bundle, each file exactly as its stage recorded it.
    built = {name: digest for stage in ("tflite", "coreml") if stage in outcomes for name, digest in outcomes[stage].result["files"].items()}
    _prune_bundle(bundle_dir, set(built))
    upstream = sorted(built.items())

    def verify_body() -> dict:
        parity = stages.verify(task, student_dir, bundle_dir, cfg)
        written = bundle_dir / PARITY_JSON
        if written.is_file():  # the verifier's JSON-safe copy (inf/nan as strings)
            return {"parity": json.loads(written.read_text(encoding="utf-8")), "parity_file": sha256_path(written)}
        return {"parity": parity, "parity_file": None}

    outcomes["verify"] = run_stage(
        cache, task, "verify", stage_inputs("verify", task, settings={"max_examples": cfg.verify_max_examples, "thresholds": cfg.verify_thresholds,
                                                                  "runtimes": matrix_runtimes(cfg), "matrix": cfg.verify_matrix,
                                                                  "arm_examples": cfg.verify_arm_examples},
                                          upstream=[outcomes["distill"].digest, *map(str, upstream)], data=data, code=code_of("verify")),
        verify_body, lambda r: r["parity_file"] is None or ((bundle_dir / PARITY_JSON).is_file() and sha256_path(bundle_dir / PARITY_JSON) == r["parity_file"]))
    outcomes["latency"] = run_stage(
        cache, task, "latency", stage_inputs("latency", task, settings={"runs": cfg.latency_runs}, upstream=list(map(str, upstream)),
                                           code=code_of("latency")),
        lambda: stages.latency(task, bundle_dir, cfg), lambda r: True)
    return task_summary(task, student_dir, bundle_dir, outcomes, cfg.task_spec(task).metric)


# --- the summary the report renders ----------------------------------------------------------------


def task_summary(task: str, student_dir: Path, bundle_dir: Path, outcomes: dict[str, StageOutcome], metric: str) -> dict:
    """Join the distillation report, the bundle manifest, parity and latency into the report's layout."""
    from export.pipeline.results import artifact_rows, distill_rows, parity_reference

    teacher, student = distill_rows(student_dir, metric)
    manifest = read_manifest(bundle_dir)
    parity = outcomes["verify"].result.get("parity") or {}
    artifacts, diffs = artifact_rows(manifest, parity, outcomes["latency"].result)
    retention = None
    if teacher.get("metric") and student.get("metric") is not None:
        retention = 100.0 * student["metric"] / teacher["metric"]
    return {"task": task, "metric_name": metric, "bundle_dir": str(bundle_dir), "student_dir": str(student_dir),
            "teacher": teacher, "student": student, "retention": retention, "reference": parity_reference(parity),
            "artifacts": artifacts, "diffs": diffs,
            "stages": {name: {"ran": o.ran, "seconds": round(o.seconds, 2)} for name, o in outcomes.items()}}


def forget_task(cfg: PipelineConfig, cache: StageCache, task: str) -> None:
    """--force: drop the task's stage records; the distill stages redo their work too (force reaches their caches)."""
    for stage in STAGE_ENTRIES:
        cache.path(task, stage).unlink(missing_ok=True)


def run_pipeline(cfg: PipelineConfig, stages: StageFunctions | None = None) -> dict:
    """Run every task, write RUN_DIR/summary.json, report.md and report.html; returns the summary (with exit_code)."""
    from export.pipeline.report import write_report

    started = time.perf_counter()
    cfg = cfg.validate()
    for folder in (cfg.run_dir, cfg.bundles_dir):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create {folder} ({error.strerror}); choose a writable folder") from None
    stages = stages or StageFunctions()
    cache = StageCache(cfg.run_dir)
    if cfg.force:
        for task in cfg.tasks:
            forget_task(cfg, cache, task)
    tasks = [run_task_pipeline(task, cfg, stages, cache) for task in cfg.tasks]
    failed = [f"{t['task']}/{a['name']}" for t in tasks for a in t["artifacts"] if a.get("passed") is False]
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("run_dir", "force")}
    summary = {"run_dir": str(Path(cfg.run_dir).resolve()), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "settings": json.loads(json.dumps(settings, default=str)), "tasks": tasks, "failed": failed,
               "exit_code": 1 if failed else 0, "seconds": round(time.perf_counter() - started, 1)}
    write_atomic(Path(cfg.run_dir) / SUMMARY_NAME, json.dumps(summary, indent=2, default=str) + "\n")
    md_path, html_path = write_report(summary, cfg.run_dir)
    summary["report"] = {"markdown": str(md_path), "html": str(html_path)}
    return summary
