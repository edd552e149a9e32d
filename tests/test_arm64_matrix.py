"""ARM64 rows of verify's matrix: the aarch64 interpreters phones run, under QEMU user mode, on named CPU models.

A real tiny bundle, real SST-2 sentences, the real aarch64 wheels of ai-edge-litert 2.3.0 and tflite-runtime 2.14.0
inside an aarch64 CPython, emulated as a Cortex-A53 (ARMv8.0, no dot-product) and a Cortex-A76 (dot-product), as
`make setup` installs them (export/verify/arm64.py). Locally a machine that cannot install them skips; CI fails.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from export.__main__ import main
from export.verify.matrix import run_worker
from tests.conftest import TINY_BUCKETS, side_runtime

ARM = ("ai-edge-litert-2.3-arm64-a53", "ai-edge-litert-2.3-arm64-a76", "tflite-runtime-2.14-arm64-a53")
FAST, COMPATIBLE = "sentiment_int8-dynamic_rt2.22.tflite", "sentiment_int8-dynamic.tflite"


@pytest.fixture(scope="module")
def arm_bundle(tiny_classifier_dir, data_dir, tmp_path_factory):
    """The tiny classifier on the default export (TFLite 2.8 and LiteRT files), fp32 and int8-dynamic."""
    from export.tflite import export_tflite

    for name in ARM:
        side_runtime(name)
    out = tmp_path_factory.mktemp("arm") / "sentiment"
    export_tflite(tiny_classifier_dir, out, precisions=("fp32", "int8-dynamic"), task="sentiment", data_dir=data_dir,
                  buckets=TINY_BUCKETS, progress=False)
    return out


@pytest.fixture(scope="module")
def arm_run(arm_bundle, tmp_path_factory, data_dir):
    bundle = shutil.copytree(arm_bundle, tmp_path_factory.mktemp("arm_run") / "sentiment")
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "40", "--arm-examples", "20",
                 "--runtimes", "ai-edge-litert-2.3", *ARM])
    return bundle, code, json.loads((bundle / "parity.json").read_text())


def test_each_arm_row_runs_the_file_the_app_opens_there_and_passes(arm_run):
    bundle, code, report = arm_run
    assert code == 0 and report["passed"], report["failures"]
    rows = {row["runtime"]: row for row in report["artifacts"] if row.get("emulator")}
    assert sorted(rows) == sorted(ARM)  # one row each: only the file the app opens on that interpreter
    assert rows["ai-edge-litert-2.3-arm64-a53"]["name"] == rows["ai-edge-litert-2.3-arm64-a76"]["name"] == FAST
    assert rows["tflite-runtime-2.14-arm64-a53"]["name"] == COMPATIBLE  # TFLite 2.14 cannot run the LiteRT profile's
    for name, row in rows.items():
        cpu = "cortex-a76" if name.endswith("a76") else "cortex-a53"
        # LiteRT rows run --arm-examples; the old interpreter's (float compute, slow under QEMU) a tenth of them
        assert row["status"] == "checked" and row["passed"] and row["examples"] == (2 if name.startswith("tflite") else 20), row
        assert row["cpu"] == cpu and row["emulator"].startswith("QEMU 10.") and row["emulator"].endswith(f"-cpu {cpu}")
        assert "aarch64" in row["interpreter"] and f"-cpu {cpu}" in row["runtime_label"]
        assert [run["emulator"] for run in row["emulator_runs"]] == [row["emulator"]]  # passed first time: no re-run
    x86 = [row for row in report["artifacts"] if row["runtime"] == "ai-edge-litert-2.3"]
    assert sorted(row["name"] for row in x86) == sorted(["sentiment_fp32.tflite", COMPATIBLE, FAST]) and all(r["examples"] == 40 for r in x86)
    markdown = (bundle / "parity.md").read_text()
    assert "QEMU user mode" in markdown and "not a phone's" in markdown


def test_arm_kernels_answer_as_the_x86_run_of_the_same_file(arm_bundle, data_dir):
    from distill.tasks import get_task

    examples = [{"text": ex["text"]} for ex in get_task("sentiment").eval_examples(data_dir)[:20]]
    x86 = run_worker(side_runtime("ai-edge-litert-2.3"), arm_bundle, FAST, examples, num_threads=1)
    for name in ARM[:2]:
        arm = run_worker(side_runtime(name), arm_bundle, FAST, examples, num_threads=1)
        assert arm["loaded"] and arm["interpreter"]["machine"] == "aarch64", arm["error"]
        assert [e["prediction"] for e in arm["examples"]] == [e["prediction"] for e in x86["examples"]], name
        got = np.array([e["outputs"][0]["logits"] for e in arm["examples"]])
        want = np.array([e["outputs"][0]["logits"] for e in x86["examples"]])
        assert np.abs(got - want).max() <= 0.05 * np.abs(want).max(), name  # other int8 kernels, the same answers


def test_a_row_that_fails_is_rerun_on_the_other_qemu_before_it_is_called_a_kernel_failure(arm_bundle, tmp_path, data_dir, capsys):
    bundle = shutil.copytree(arm_bundle, tmp_path / "sentiment")
    code = main(["verify", str(bundle), "--data-dir", str(data_dir), "--max-examples", "4", "--arm-examples", "4",
                 "--runtimes", "ai-edge-litert-2.3-arm64-a53", "--threshold", "tflite/int8-dynamic.max_abs_diff=0"])
    report = json.loads((bundle / "parity.json").read_text())
    (row,) = [r for r in report["artifacts"] if r.get("emulator")]
    assert code == 1 and not row["passed"]
    assert [run["emulator"].split()[1][:2] for run in row["emulator_runs"]] == ["10", "7."]  # QEMU 10, then 7.2
    assert any("alike: an ARM kernel failure, not an emulator's" in f for f in report["failures"])
    assert "parity FAILED" in capsys.readouterr().err
