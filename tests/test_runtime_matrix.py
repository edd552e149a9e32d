"""verify's runtime matrix: each .tflite of a tiny bundle through real interpreters, each in its own environment.

ai-edge-litert 2.3 (main environment), tflite-runtime 2.14 (numpy 1.24) and TFLite 2.8 (tensorflow-cpu 2.8.4 on
Python 3.10), as `make setup` installs them. Locally a missing side environment skips with its reason; under
CI=true it fails.
"""
from __future__ import annotations

import json
import shutil

import pytest

from export.__main__ import main
from export.verify.matrix import select_runtimes
from export.verify.runtimes import RUNTIMES, installed_runtimes
from mobile_app.runtime.bundle import sha256_path
from tests.conftest import side_runtime

THREE = ("ai-edge-litert-2.3", "tflite-runtime-2.14", "tflite-2.8")


@pytest.fixture(scope="module")
def three_runtimes():
    return [side_runtime(name) for name in THREE]


@pytest.fixture(scope="module")
def matrix_run(three_runtimes, tiny_tflite_bundle, data_dir, tmp_path_factory):
    """The tiny sentiment bundle (fp32, fp16, int8-dynamic, int8-static) verified on 40 SST-2 dev examples on three runtimes."""
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path_factory.mktemp("matrix") / "sentiment")
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "40", "--runtimes", *THREE])
    return bundle, code, json.loads((bundle / "parity.json").read_text())


def test_fp32_passes_on_every_runtime_with_its_latency(matrix_run):
    bundle, _, report = matrix_run
    assert [r["name"] for r in report["runtimes"]] == list(THREE) and all(r["installed"] for r in report["runtimes"])
    rows = {(row["precision"], row["runtime"]): row for row in report["artifacts"]}
    assert len(rows) == 4 * 3 == len(report["artifacts"])
    interpreters = {"ai-edge-litert-2.3": "ai_edge_litert 2.3.0", "tflite-runtime-2.14": "tflite_runtime 2.14.0", "tflite-2.8": "tensorflow 2.8.4"}
    for runtime, interpreter in interpreters.items():
        row = rows["fp32", runtime]
        assert row["status"] == "checked" and row["passed"], row["failures"]
        assert row["interpreter"].startswith(interpreter + " (numpy ")
        assert row["max_abs_diff"] <= 1e-4 and row["agreement"] == 100.0 and row["examples"] == 40
        assert row["metric"] == pytest.approx(report["reference"]["metric"])
        assert 0 < row["latency_ms"]["median"] <= row["latency_ms"]["p90"] and row["latency_ms"]["examples"] == 40
        assert row["latency_ms"]["threads"] >= 1  # one check per core: a worker gets the cores left over
        assert len(report["diffs"][f"sentiment_fp32.tflite @ {runtime}"]) == 40
    assert "numpy 1." in rows["fp32", "tflite-2.8"]["interpreter"] and "Python 3.10" in rows["fp32", "tflite-2.8"]["interpreter"]
    markdown = (bundle / "parity.md").read_text()
    assert "| artifact | ai-edge-litert-2.3 | tflite-runtime-2.14 | tflite-2.8 |" in markdown
    fp32_line = next(line for line in markdown.splitlines() if line.startswith("| sentiment_fp32.tflite |"))
    assert fp32_line.count("PASS") == 3 and fp32_line.count(" ms") == 3


def test_every_row_is_a_result_and_bundle_json_records_where_each_artifact_ran(matrix_run, capsys):
    bundle, code, report = matrix_run
    for row in report["artifacts"]:
        if row["status"] == "needs a newer runtime":  # the LiteRT profile's int8 files on old interpreters: never opened there
            assert row["passed"] is None and not row["failures"] and "need TFLite >= " in row["reason"]
            assert row["runtime"] != "ai-edge-litert-2.3" and row["precision"].startswith("int8")
            continue
        assert row["status"] in ("checked", "does not load", "fails") and isinstance(row["passed"], bool)
        if not row["passed"]:
            assert row["failures"] and all(f.startswith(f"{row['name']} on {row['runtime']}: ") for f in row["failures"])
        if row["status"] == "does not load":
            assert row["failures"][0].startswith(f"{row['name']} on {row['runtime']}: does not load: ") and row["reason"]
    assert code == (0 if report["passed"] else 1)
    assert report["passed"] == all(row["passed"] for row in report["artifacts"] if row["passed"] is not None)
    manifest = json.loads((bundle / "bundle.json").read_text())
    for entry in manifest["artifacts"]:
        ran = {v["runtime"]: v for v in entry["verified_on"]}
        rows = {r["runtime"]: r for r in report["artifacts"] if r["name"] == entry["file"]}
        assert list(ran) == [name for name in THREE if rows[name]["status"] != "needs a newer runtime"]
        for runtime, record in ran.items():
            row = rows[runtime]
            assert record["passed"] == row["passed"] and record["status"] == row["status"] and record["interpreter"] == row["interpreter"]


def test_a_file_no_interpreter_loads_is_a_failed_row_naming_artifact_and_runtime(three_runtimes, tiny_tflite_bundle, data_dir, tmp_path, capsys):
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "broken")
    broken = bundle / "sentiment_fp16.tflite"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])  # a cut-off copy, re-hashed: consistent, unloadable
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["files"][broken.name] = sha256_path(broken)
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "5", "--runtimes", "ai-edge-litert-2.3", "tflite-2.8"])
    assert code == 1
    err = capsys.readouterr().err
    for runtime in ("ai-edge-litert-2.3", "tflite-2.8"):
        assert f"parity FAILED: sentiment_fp16.tflite on {runtime}: does not load: " in err
    rows = {(r["precision"], r["runtime"]): r for r in json.loads((bundle / "parity.json").read_text())["artifacts"]}
    assert rows["fp16", "tflite-2.8"]["status"] == "does not load" and rows["fp16", "tflite-2.8"]["passed"] is False
    assert rows["fp32", "tflite-2.8"]["passed"] and rows["fp32", "ai-edge-litert-2.3"]["passed"]


def test_a_runtime_without_its_environment_is_marked_not_installed(tiny_tflite_bundle, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYBERT_RUNTIMES_DIR", str(tmp_path / "no-environments"))
    assert [r.name for r in installed_runtimes()] == ["ai-edge-litert-2.3"]
    assert [r.name for r in select_runtimes(None)] == ["ai-edge-litert-2.3"]
    bundle = shutil.copytree(tiny_tflite_bundle, tmp_path / "bundle")
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "5", "--runtimes", "ai-edge-litert-2.3", "tflite-runtime-2.14"])
    report = json.loads((bundle / "parity.json").read_text())
    missing = [r for r in report["artifacts"] if r["runtime"] == "tflite-runtime-2.14"]
    assert len(missing) == 4 and all(r["status"] == "not installed" and r["passed"] is None and not r["failures"] for r in missing)
    assert code == (0 if report["passed"] else 1)  # neutral: decided by the installed runtime's rows alone
    assert report["passed"] == all(r["passed"] for r in report["artifacts"] if r["runtime"] == "ai-edge-litert-2.3")
    assert "not installed" in capsys.readouterr().out
    assert "not installed" in (bundle / "parity.md").read_text()


def test_runtime_names_are_checked_before_anything_runs(tmp_path, capsys):
    assert main(["verify", str(tmp_path / "no-bundle-yet"), "--runtimes", "tflite-9.9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown runtime tflite-9.9; choose from ") and all(r.name in err for r in RUNTIMES)


def test_setup_reports_a_runtime_it_cannot_install_in_one_line_and_fails_only_when_strict(tmp_path, monkeypatch, capsys):
    import export.verify.runtimes as runtimes

    unobtainable = runtimes.Runtime("tflite-0.1", "tflite-runtime", "0.1.0", "tflite_runtime", "2.1", ".venv-nowhere", ("tflite-runtime==0.1.0",))
    monkeypatch.setattr(runtimes, "RUNTIMES", (unobtainable,))
    monkeypatch.setenv(runtimes.ROOT_VARIABLE, str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    assert runtimes.main(["install"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("runtime tflite-0.1: not installed: no Python 2.1 found (pyenv install 2.1, or set TINYBERT_PYTHON21=")
    assert runtimes.main(["install", "--strict"]) == 1
    assert "could not be installed" in capsys.readouterr().err and not (tmp_path / ".venv-nowhere").exists()
