"""The pipeline's stage cache: keys, completion records, skipping, and picking up after an interruption.

Stage bodies here are small fakes that write a file (the real stages run in tests/test_pipeline.py).
"""
from __future__ import annotations

import json
import sys

import pytest

from export.pipeline.run import run_stage
from export.pipeline.cache import StageCache, changed_inputs, file_hashes, stage_code, stage_inputs, stage_key


class CountingBody:
    """A stage body that writes one output file and counts its calls; `fail` makes it die mid-way."""

    def __init__(self, out, fail=False):
        self.out, self.fail, self.calls = out, fail, 0

    def __call__(self):
        self.calls += 1
        self.out.write_text("partial")
        if self.fail:
            raise KeyboardInterrupt("interrupted mid-stage")
        self.out.write_text(f"done {self.calls}")
        return {"file": str(self.out), "content": self.out.read_text()}


def intact(result):
    from pathlib import Path

    path = Path(result["file"])
    return path.is_file() and path.read_text() == result["content"]


def test_key_depends_on_every_input_but_not_on_order():
    base = dict(settings={"a": 1, "b": [1, 2]}, upstream=["u1"], data={"train": "h1"}, code={"distill": "c1"})
    key = stage_key("distill", "spam", **base)
    assert key == stage_key("distill", "spam", **dict(base, settings={"b": [1, 2], "a": 1}))
    for change in (dict(settings={"a": 2, "b": [1, 2]}), dict(upstream=["u2"]), dict(data={"train": "h2"}), dict(code={"distill": "c2"})):
        assert stage_key("distill", "spam", **dict(base, **change)) != key
    assert stage_key("tflite", "spam", **base) != key and stage_key("distill", "qa", **base) != key


def inputs(version="1", stage="tflite"):
    return stage_inputs(stage, "spam", settings={"precisions": ["fp32"]}, upstream=["u"], code={"export.tflite": version})


def test_second_run_skips_and_changed_inputs_rerun_saying_why(tmp_path, capsys):
    cache, body = StageCache(tmp_path / "run"), CountingBody(tmp_path / "out.txt")
    first = run_stage(cache, "spam", "tflite", inputs("1"), body, intact)
    assert first.ran and body.calls == 1
    record_path = cache.path("spam", "tflite")
    stamp = record_path.stat().st_mtime_ns
    second = run_stage(cache, "spam", "tflite", inputs("1"), body, intact)
    assert not second.ran and body.calls == 1 and second.result == first.result and second.digest == first.digest
    assert record_path.stat().st_mtime_ns == stamp
    third = run_stage(cache, "spam", "tflite", inputs("2"), body, intact)
    assert third.ran and body.calls == 2
    assert "[spam] tflite: running (inputs changed: code.export.tflite)" in capsys.readouterr().err
    assert json.loads(record_path.read_text())["inputs"]["code"] == {"export.tflite": "2"}


def test_missing_or_changed_output_reruns_the_stage(tmp_path):
    cache, body = StageCache(tmp_path / "run"), CountingBody(tmp_path / "out.txt")
    run_stage(cache, "spam", "tflite", inputs(), body, intact)
    (tmp_path / "out.txt").write_text("edited by hand")
    assert run_stage(cache, "spam", "tflite", inputs(), body, intact).ran and body.calls == 2
    (tmp_path / "out.txt").unlink()
    assert run_stage(cache, "spam", "tflite", inputs(), body, intact).ran and body.calls == 3


def test_interrupted_stage_leaves_no_record_and_the_next_run_redoes_only_it(tmp_path):
    cache = StageCache(tmp_path / "run")
    done = CountingBody(tmp_path / "a.txt")
    run_stage(cache, "spam", "distill", inputs(stage="distill"), done, intact)
    dying = CountingBody(tmp_path / "b.txt", fail=True)
    with pytest.raises(KeyboardInterrupt):
        run_stage(cache, "spam", "tflite", inputs(), dying, intact)
    assert not cache.path("spam", "tflite").exists()
    assert sorted(p.name for p in cache.dir.iterdir()) == ["spam.distill.json"]  # no temp files left behind
    resumed = CountingBody(tmp_path / "b.txt")
    assert not run_stage(cache, "spam", "distill", inputs(stage="distill"), done, intact).ran
    assert run_stage(cache, "spam", "tflite", inputs(), resumed, intact).ran and resumed.calls == 1


def test_unreadable_record_counts_as_missing(tmp_path):
    cache, body = StageCache(tmp_path / "run"), CountingBody(tmp_path / "out.txt")
    cache.dir.mkdir(parents=True)
    cache.path("spam", "verify").write_text("{not json")
    assert run_stage(cache, "spam", "verify", inputs(stage="verify"), body, intact).ran


def test_changed_inputs_names_nested_fields():
    old = inputs("1")
    new = dict(old, settings={"precisions": ["fp32", "fp16"]}, upstream=["v"])
    assert changed_inputs(old, new) == ["settings.precisions", "upstream"]
    assert changed_inputs(old, old) == []


def test_stage_code_follows_the_imports_of_the_source(tmp_path, monkeypatch):
    package = tmp_path / "fakepkg_for_cache"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stage.py").write_text("def body():\n    from fakepkg_for_cache.helper import X\n    return X\n")
    (package / "helper.py").write_text("from . import leaf\nX = 1\n")
    (package / "leaf.py").write_text("Y = 1\n")
    (package / "unused.py").write_text("Z = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = stage_code(["fakepkg_for_cache.stage"], packages=("fakepkg_for_cache",))
    assert sorted(before) == ["fakepkg_for_cache", "fakepkg_for_cache.helper", "fakepkg_for_cache.leaf", "fakepkg_for_cache.stage"]
    (package / "leaf.py").write_text("Y = 2\n")  # two imports away, inside a function
    (package / "unused.py").write_text("Z = 2\n")
    after = stage_code(["fakepkg_for_cache.stage"], packages=("fakepkg_for_cache",))
    assert changed_inputs({"code": before}, {"code": after}) == ["code.fakepkg_for_cache.leaf"]
    sys.modules.pop("fakepkg_for_cache", None)


def test_each_stage_runs_the_code_it_imports_and_no_more():
    from export.pipeline.run import STAGE_ENTRIES, code_of

    codes = {stage: code_of(stage) for stage in STAGE_ENTRIES}
    assert {"export.tflite_compat", "export.packed_words", "export.quantize"} <= set(codes["tflite"])
    assert not any(name.startswith("export") for name in codes["distill"] if name != "export.pipeline.stages")
    # verify runs the app's runtime in every interpreter's worker, not the converters
    assert {"export.verify.runtime_worker", "mobile_app.runtime.task_runner", "mobile_app.runtime.backend_factory"} <= set(codes["verify"])
    assert "export.tflite" not in codes["verify"] and "export.tflite_compat" not in codes["verify"]


REBUILD = """
import json, sys
from pathlib import Path
from export.pipeline.cache import StageCache, stage_inputs
from export.pipeline.run import code_of, run_stage
from export.tflite import export_tflite

student, bundle, run_dir = map(Path, sys.argv[1:4])
cache = StageCache(run_dir)
def body():
    manifest = export_tflite(student, bundle, precisions=["fp32"], task="sentiment", buckets=[16], progress=False)
    return {"files": {a["file"]: a["size_bytes"] for a in manifest["artifacts"]}}
inputs = stage_inputs("tflite", "sentiment", settings={"precisions": ["fp32"]}, upstream=["student"], code=code_of("tflite"))
outcome = run_stage(cache, "sentiment", "tflite", inputs, body, lambda result: (bundle / "sentiment_fp32.tflite").is_file())
print(json.dumps({"ran": outcome.ran}))
"""


def test_an_edit_to_the_tflite_compatibility_code_rebuilds_the_tflite_files(tiny_classifier_dir, tmp_path):
    """A copy of the kit, a cached TFLite stage, one comment added to export/tflite_compat.py: the stage runs again."""
    import shutil
    import subprocess

    from tests.conftest import REPO_ROOT

    kit = tmp_path / "kit"
    for package in ("distill", "export", "mobile_app"):
        shutil.copytree(REPO_ROOT / package, kit / package, ignore=shutil.ignore_patterns("__pycache__"))

    def stage():
        done = subprocess.run([sys.executable, "-c", REBUILD, str(tiny_classifier_dir), str(tmp_path / "bundle"), str(tmp_path / "run")],
                              cwd=kit, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])["ran"], done.stderr

    assert stage()[0] is True
    assert stage()[0] is False  # nothing changed: cached
    compat = kit / "export" / "tflite_compat.py"
    compat.write_text(compat.read_text() + "\n# an edit\n")
    ran, log = stage()
    assert ran is True and "inputs changed: code.export.tflite_compat" in log


def test_file_hashes_of_real_data(data_dir):
    hashes = file_hashes({"all": data_dir / "sms_spam" / "SMSSpamCollection", "train": data_dir / "nope.json"})
    assert hashes["all"] == "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"  # data README's sha256
    assert hashes["train"] == "absent"


def test_force_forgets_the_task_records_and_hands_force_to_the_distill_caches(tmp_path, data_dir):
    from export.pipeline.run import forget_task
    from export.pipeline.config import PipelineConfig
    from distill.run_folder import cached_record

    cfg = PipelineConfig(data_dir=data_dir, run_dir=tmp_path / "run", bundles_dir=tmp_path / "bundles", force=True)
    cache = StageCache(cfg.run_dir)
    for task in ("spam", "qa"):
        cache.complete(task, "distill", inputs(stage="distill"), {}, 1.0)
        (cfg.run_dir / task / "teacher").mkdir(parents=True)
        (cfg.run_dir / task / "teacher" / "teacher_key.json").write_text(json.dumps({"key": "k"}))
    forget_task(cfg, cache, "spam")
    assert not cache.path("spam", "distill").exists() and cache.path("qa", "distill").exists()
    # nothing of the user's is deleted: the distill stages are told to redo their work instead
    teacher = cfg.run_dir / "spam" / "teacher"
    assert cached_record(teacher, "teacher_key.json", "k") == {"key": "k"}
    assert cached_record(teacher, "teacher_key.json", "k", force=True) is None
    assert cached_record(teacher, "teacher_key.json", "other") is None
