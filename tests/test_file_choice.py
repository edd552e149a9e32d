"""Each interpreter opens the fastest file it can run: a bundle made for TFLite 2.8 and for LiteRT (the default export)
holds both int8 files, and the contract's rule picks by the interpreter's TFLite version, in real interpreters."""
from __future__ import annotations

import json

import pytest

from export.verify.matrix import run_worker
from mobile_app.package_app import stage_app
from mobile_app.runtime import load_task
from mobile_app.runtime.bundle import BundleError, artifacts, choose_artifact, load_manifest
from mobile_app.runtime.contract import ARTIFACT_PROFILE_FIELD, TFLITE_NEEDS_FIELD, TFLITE_PROFILE_FIELD
from tests.conftest import TINY_BUCKETS, side_runtime

FAST, COMPATIBLE = "sentiment_int8-dynamic_rt2.22.tflite", "sentiment_int8-dynamic.tflite"
SENTENCES = [{"text": "a charming and often affecting journey ."}, {"text": "unflinchingly bleak and desperate"}]


@pytest.fixture(scope="module")
def two_profile_bundle(tiny_classifier_dir, data_dir, tmp_path_factory):
    """The tiny classifier exported on the defaults (profiles 2.8 and litert), fp32 and int8-dynamic."""
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("profiles") / "sentiment"
    export_tflite(tiny_classifier_dir, out, precisions=("fp32", "int8-dynamic"), task="sentiment", data_dir=data_dir,
                  buckets=TINY_BUCKETS, progress=False)
    return out


@pytest.fixture(scope="module")
def compatible_only_bundle(tiny_classifier_dir, data_dir, tmp_path_factory):
    from export.tflite import export_tflite

    out = tmp_path_factory.mktemp("compatible") / "sentiment"
    export_tflite(tiny_classifier_dir, out, precisions=("fp32", "int8-dynamic"), task="sentiment", data_dir=data_dir,
                  buckets=TINY_BUCKETS, progress=False, min_runtime="2.8")
    return out


def test_the_default_export_holds_a_compatible_and_a_fast_int8_file_and_one_fp32(two_profile_bundle):
    manifest = load_manifest(two_profile_bundle)
    files = {a["file"]: a for a in artifacts(manifest, "tflite")}
    assert sorted(files) == sorted(["sentiment_fp32.tflite", COMPATIBLE, FAST])  # fp32 is the same bytes in both profiles
    assert manifest[TFLITE_PROFILE_FIELD]["profiles"] == ["2.8.0", "2.22.0"]
    assert files[COMPATIBLE][ARTIFACT_PROFILE_FIELD] == "2.8.0" and files[COMPATIBLE][TFLITE_NEEDS_FIELD]["min_runtime"] == "2.8.0"
    assert files[FAST][ARTIFACT_PROFILE_FIELD] == "2.22.0" and files[FAST][TFLITE_NEEDS_FIELD]["min_runtime"] == "2.18.0"
    assert "FULLY_CONNECTED" in files[FAST][TFLITE_NEEDS_FIELD]["ops"] and files[FAST][TFLITE_NEEDS_FIELD]["ops"]["FULLY_CONNECTED"]["version"] == 12


def test_the_rule_picks_by_tflite_version_not_by_file_name(two_profile_bundle):
    entries = artifacts(load_manifest(two_profile_bundle), "tflite")
    renamed = [dict(e, file=f"x{i}.tflite") for i, e in enumerate(reversed(entries))]  # names and order carry nothing
    for version, profile in (("2.8.4", "2.8.0"), ("2.14.0", "2.8.0"), ("2.17.0", "2.8.0"), ("2.18.0", "2.22.0"), ("2.22.0", "2.22.0")):
        assert choose_artifact(renamed, version)[ARTIFACT_PROFILE_FIELD] == profile, version
    assert choose_artifact(renamed, "2.22.0", "fp32")["precision"] == "fp32"
    assert choose_artifact(renamed, None)[ARTIFACT_PROFILE_FIELD] == "2.8.0"  # an unknown interpreter: the file every one runs


def test_litert_opens_the_fast_file_and_the_app_says_which(two_profile_bundle):
    from mobile_app.screens import artifact_title

    runner = load_task(two_profile_bundle)
    assert runner.artifact_name == FAST and runner.backend.tflite_version == "2.22.0"
    assert artifact_title(runner) == f"tflite int8-dynamic · {FAST}"
    assert runner.available_precisions() == ["fp32", "int8-dynamic"]
    runner.set_precision("fp32")
    assert runner.artifact_name == "sentiment_fp32.tflite"


@pytest.mark.parametrize("name, expected", [("tflite-2.8", COMPATIBLE), ("tflite-runtime-2.14", COMPATIBLE), ("ai-edge-litert-2.3", FAST)])
def test_each_real_interpreter_opens_the_file_its_version_runs_and_answers(two_profile_bundle, name, expected):
    result = run_worker(side_runtime(name), two_profile_bundle, None, SENTENCES, num_threads=1)
    assert result["loaded"], result["error"]
    assert result["file"] == expected and len(result["examples"]) == 2 and result["failed_at"] is None


@pytest.mark.parametrize("name", ["tflite-2.8", "ai-edge-litert-2.3"])
def test_a_bundle_with_only_the_compatible_file_opens_everywhere(compatible_only_bundle, name):
    assert [a["file"] for a in artifacts(load_manifest(compatible_only_bundle), "tflite")] == ["sentiment_fp32.tflite", COMPATIBLE]
    result = run_worker(side_runtime(name), compatible_only_bundle, None, SENTENCES, num_threads=1)
    assert result["loaded"], result["error"]
    assert result["file"] == COMPATIBLE and len(result["examples"]) == 2


def test_the_app_does_not_offer_int8_static_which_ran_slower_than_fp32(tiny_tflite_bundle):
    runner = load_task(tiny_tflite_bundle)
    assert "int8-static" in runner.available_precisions() and "int8-static" not in runner.app_choices()
    runner.set_precision("int8-static")  # still opens when asked for by name
    assert runner.app_choices()[-1] == "int8-static" and runner.artifact_name == "sentiment_int8-static.tflite"


def test_packaging_ships_the_file_each_android_route_opens(two_profile_bundle, compatible_only_bundle, tmp_path):
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "sentiment").symlink_to(two_profile_bundle, target_is_directory=True)
    for route, expected in (("litert", FAST), ("p4a-tflite-2.8", COMPATIBLE)):
        stage_app(bundles, tmp_path / route, precisions=["default"], route=route)
        manifest = json.loads((tmp_path / route / "bundles" / "sentiment" / "bundle.json").read_text())
        assert [a["file"] for a in manifest["artifacts"]] == [expected], route
        assert sorted(p.name for p in (tmp_path / route / "bundles" / "sentiment").glob("*.tflite")) == [expected]
    stage_app(bundles, tmp_path / "all", route="litert")  # every precision, each as LiteRT opens it
    manifest = json.loads((tmp_path / "all" / "bundles" / "sentiment" / "bundle.json").read_text())
    assert sorted(a["file"] for a in manifest["artifacts"]) == sorted(["sentiment_fp32.tflite", FAST])


def test_packaging_refuses_a_file_the_route_cannot_run(tiny_classifier_dir, data_dir, tmp_path):
    from export.tflite import export_tflite

    export_tflite(tiny_classifier_dir, tmp_path / "bundles" / "sentiment", precisions=("int8-dynamic",), task="sentiment",
                  data_dir=data_dir, buckets=TINY_BUCKETS, progress=False, min_runtime="litert")
    with pytest.raises(BundleError, match=r"^sentiment_int8-dynamic\.tflite: .*need TFLite >= 2\.18\.0, but the p4a-tflite-2\.8 "
                                          r"route runs TFLite 2\.8\.0; re-export the bundle with `python -m export tflite --min-runtime 2\.8 litert`$"):
        stage_app(tmp_path / "bundles", tmp_path / "p4a", precisions=["default"], route="p4a-tflite-2.8")
    assert not (tmp_path / "p4a").exists()


def test_an_unknown_route_and_a_zero_arm_example_count_are_one_line_errors(tmp_path, capsys):
    from export.commands import main

    assert main(["package", "--bundles", str(tmp_path), "--out", str(tmp_path / "out"), "--route", "nowhere"]) == 2
    assert capsys.readouterr().err.strip() == ("error: unknown --route 'nowhere'; choose litert or p4a-tflite-2.8 "
                                               "(the interpreter the APK carries)")
    assert main(["verify", str(tmp_path / "bundle"), "--arm-examples", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --arm-examples must be at least 1, got 0"
    assert not (tmp_path / "out").exists()
