"""The one-command pipeline end to end on a tiny configuration: real distillation, real TFLite and Core ML
exports, real parity verification and real on-device latency, on a few hundred real SMS messages.

One run builds the bundle (module fixture); the other tests re-run it to check the cache, the exit codes
and the bundle the app loads.
"""
from __future__ import annotations

import dataclasses

import pytest

from export.pipeline.run import run_pipeline
from export.pipeline.config import PipelineConfig
from export.pipeline.stages import StageFunctions
from export.__main__ import main as export_main
from export.pipeline.cli import run_and_report
from tests.test_report import CHROMIUM, screenshot
from tests.tiny_models import make_tiny_bert


def main(argv: list[str]) -> int:
    """`python -m export pipeline ARGV`."""
    return export_main(["pipeline", *argv])


TINY_STUDENT = {"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64}
TINY_DISTILL = {"max_seq_length": 32, "batch_size": 32, "intermediate_epochs": 1, "prediction_epochs": 1}


class CountingStages:
    """The real stage functions, each wrapped to count its calls (or to refuse to run at all)."""

    def __init__(self, refuse: bool = False):
        self.calls: dict[str, int] = {}
        self.refuse = refuse

    def functions(self) -> StageFunctions:
        real = StageFunctions()

        def wrap(name, fn):
            def counted(*args, **kwargs):
                self.calls[name] = self.calls.get(name, 0) + 1
                if self.refuse:
                    raise AssertionError(f"stage {name} ran although its inputs did not change")
                return fn(*args, **kwargs)
            return counted

        return StageFunctions(**{f.name: wrap(f.name, getattr(real, f.name)) for f in dataclasses.fields(real)})


@pytest.fixture(scope="module")
def spam_config(tmp_path_factory, data_dir) -> PipelineConfig:
    root = tmp_path_factory.mktemp("pipeline_spam")
    teacher = make_tiny_bert(root / "teacher", head="classification", labels=("ham", "spam"), seed=1)
    return PipelineConfig(data_dir=data_dir, run_dir=root / "run", bundles_dir=root / "bundles", tasks=("spam",),
                          teacher={"spam": str(teacher)}, student=TINY_STUDENT, init="random", precisions=("fp32", "int8-dynamic"),
                          coreml_variants=("fp16",), max_train_examples=160, max_eval_examples=100,
                          buckets={"spam": (16, 32)}, distill_overrides=TINY_DISTILL, verify_max_examples=100, latency_runs=3,
                          verify_runtimes=("ai-edge-litert-2.3",))  # int8-dynamic: old runtimes are the matrix's tests


@pytest.fixture(scope="module")
def first_run(spam_config):
    stages = CountingStages()
    summary = run_pipeline(spam_config, stages.functions())
    return summary, stages


def test_pipeline_builds_a_bundle_the_app_runs(spam_config, first_run):
    from mobile_app.runtime import load_task

    summary, stages = first_run
    assert summary["exit_code"] == 0, summary["failed"]
    assert stages.calls == {"distill": 1, "tflite": 1, "coreml": 1, "verify": 1, "latency": 1}
    (task,) = summary["tasks"]
    names = {a["name"] for a in task["artifacts"]}
    assert {a["precision"] for a in task["artifacts"] if a["format"] == "tflite"} == {"fp32", "int8-dynamic"}
    assert any(a["format"] == "coreml" for a in task["artifacts"])
    for artifact in task["artifacts"]:
        assert artifact["passed"] is True and artifact["size_bytes"] > 0 and artifact["metric"] is not None
        if artifact["format"] == "tflite":
            assert artifact["latency_ms"] > 0
    assert task["teacher"]["metric"] is not None and task["student"]["metric"] is not None
    # the tiny teacher has the spam head: used as given (not fine-tuned), and the report says so
    assert task["teacher"]["given"] is True and task["teacher"]["source"] == spam_config.teacher["spam"]
    assert not (spam_config.run_dir / "spam" / "teacher").exists()
    runner = load_task(spam_config.bundles_dir / "spam", task="spam")
    prediction, latency_ms = runner.classify("WINNER!! Claim your free prize now, call 09061701461")
    assert prediction.label in ("ham", "spam") and latency_ms > 0
    # The report names every artifact, and the HTML renders in a real browser.
    report = (spam_config.run_dir / "report.md").read_text()
    assert all(name in report for name in names)
    assert "Artifact x runtime:" in report and "| spam_fp32.tflite | PASS " in report
    assert all(a["runtimes"] == {"ai-edge-litert-2.3": a["runtimes"]["ai-edge-litert-2.3"]} for a in task["artifacts"] if a["format"] == "tflite")
    if CHROMIUM:
        screenshot(spam_config.run_dir / "report.html", spam_config.run_dir, "pipeline_report.png")


def test_second_run_does_no_work(spam_config, first_run):
    records = sorted((spam_config.run_dir / "cache").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in records}
    bundle_stamp = (spam_config.bundles_dir / "spam" / "bundle.json").stat().st_mtime_ns
    refusing = CountingStages(refuse=True)
    summary = run_pipeline(spam_config, refusing.functions())
    assert refusing.calls == {}
    assert {p: p.stat().st_mtime_ns for p in records} == stamps
    assert (spam_config.bundles_dir / "spam" / "bundle.json").stat().st_mtime_ns == bundle_stamp
    assert all(not s["ran"] for s in summary["tasks"][0]["stages"].values())
    assert summary["tasks"][0]["artifacts"] == first_run[0]["tasks"][0]["artifacts"]


def test_failing_parity_threshold_exits_1_naming_the_artifact(spam_config, first_run, capsys):
    """Only verification re-runs (its thresholds are part of its inputs); the exit code and message name the artifact."""
    strict = dataclasses.replace(spam_config, verify_thresholds={"tflite/fp32": {"min_agreement": 100.5}})
    stages = CountingStages()
    summary = run_pipeline(strict, stages.functions())
    assert stages.calls == {"verify": 1}
    assert summary["exit_code"] == 1 and summary["failed"] == ["spam/spam_fp32.tflite"]
    assert "FAIL: spam_fp32.tflite" in (strict.run_dir / "report.md").read_text()
    capsys.readouterr()
    assert run_and_report(strict) == 1  # cached now: the same verdict, printed by the CLI's reporter
    out, err = capsys.readouterr()
    assert "spam_fp32.tflite" in out and "FAIL" in out
    assert "parity FAILED (task spam): spam_fp32.tflite on ai-edge-litert-2.3: agreement 100.00% < 100.5%" in err


@pytest.mark.parametrize("flags, message", [
    (["--tasks", "poetry"], "unknown task 'poetry'"),
    (["--precisions", "int4"], "unknown TFLite precision int4"),
    (["--coreml-variants", "int3"], "int3"),
    (["--max-train-examples", "0"], "--max-train-examples must be a positive number"),
    (["--student", "3x64x5x128"], "not a multiple of its 5 heads"),
    (["--threshold", "tflite/fp32.closeness=1"], "bad --threshold"),
    (["--tasks", "spam", "--teacher", "qa=owner/name"], "is not a task of this run"),
    (["--teacher", "sentiment="], "names no teacher"),
    (["--teachers", "/nonexistent/models"], "is not a folder"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(data_dir, tmp_path, capsys, flags, message):
    argv = ["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--bundles", str(tmp_path / "bundles"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "bundles").exists()


def test_teachers_flags_reach_the_config_and_a_mismatched_teacher_is_refused_up_front(data_dir, tmp_path, capsys,
                                                                                        tiny_classifier_dir, tiny_spam_dir):
    from export.pipeline.cli import add_pipeline_arguments, config_from_args
    import argparse

    models = tmp_path / "models"
    models.mkdir()
    (models / "spam").symlink_to(tiny_spam_dir, target_is_directory=True)
    base = ["--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--bundles", str(tmp_path / "bundles"), "--tasks", "spam"]
    args = add_pipeline_arguments(argparse.ArgumentParser()).parse_args(base + ["--teachers", str(models)])
    assert config_from_args(args).teacher == {"spam": str(models / "spam")}
    # a sentiment classifier given for spam: refused before any task runs, nothing written
    assert main(base + ["--tasks", "sentiment", "spam", "--teacher", f"spam={tiny_classifier_dir}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "task spam needs ham, spam" in err and "\n" not in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "bundles").exists()


def test_missing_data_dir_exits_2(tmp_path, capsys):
    assert main(["--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--bundles", str(tmp_path / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, data_dir):
    """QA end to end, kept small: one TFLite precision, no Core ML, one bucket, a few SQuAD questions."""
    root = tmp_path_factory.mktemp("pipeline_qa")
    teacher = make_tiny_bert(root / "teacher", head="qa", seed=2)
    cfg = PipelineConfig(data_dir=data_dir, run_dir=root / "run", bundles_dir=root / "bundles", tasks=("qa",),
                         teacher=str(teacher), student=TINY_STUDENT, init="random", precisions=("fp32",),
                         skip_coreml=True, max_train_examples=40, max_eval_examples=20, buckets={"qa": (128,)},
                         distill_overrides=dict(TINY_DISTILL, max_seq_length=128, doc_stride=32, max_query_length=32),
                         verify_max_examples=20, latency_runs=3)
    return cfg, run_pipeline(cfg)


def test_qa_pipeline_builds_a_bundle_that_answers(qa_run):
    from mobile_app.runtime import load_task

    cfg, summary = qa_run
    assert summary["exit_code"] == 0, summary["failed"]
    (task,) = summary["tasks"]
    assert task["metric_name"] == "f1" and [a["name"] for a in task["artifacts"]] == ["qa_fp32.tflite"]
    assert task["artifacts"][0]["passed"] and task["artifacts"][0]["latency_bucket"] == 128
    # the default matrix: every installed runtime answers the QA windows (numpy 1.x ones included) as PyTorch does
    from export.verify.runtimes import installed_runtimes

    runtimes = task["artifacts"][0]["runtimes"]
    assert list(runtimes) == [r.name for r in installed_runtimes()] and all(cell.startswith("PASS ") for cell in runtimes.values())
    assert "stages" in task and "coreml" not in task["stages"]
    context = "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France."
    answer, _ = load_task(cfg.bundles_dir / "qa", task="qa").answer("Which region did the Normans name?", context)
    assert answer.text == context[answer.start_char:answer.end_char]
