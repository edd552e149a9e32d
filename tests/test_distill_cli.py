"""The distill command line: its sub-commands, and bad input refused with one line, exit 2 and nothing written."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distill.cli import main
from tests.conftest import REPO_ROOT


def test_help_lists_the_stages():
    done = subprocess.run([sys.executable, "-m", "distill", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    for command in ("run", "teacher", "general", "task"):
        assert command in done.stdout


def _config_folder(path, config: dict):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    return path


@pytest.fixture
def gpt2_dir(tmp_path):
    return _config_folder(tmp_path / "gpt2", {"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 10,
                                              "architectures": ["GPT2LMHeadModel"]})


@pytest.fixture
def distilbert_dir(tmp_path):
    return _config_folder(tmp_path / "distilbert", {"model_type": "distilbert", "n_layers": 1, "dim": 8, "n_heads": 2,
                                                    "hidden_dim": 16, "vocab_size": 10})


def _refused(capsys, args, out, expected):
    code = main(args + ["--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists(), "nothing may be written on bad input"


def test_unknown_task(capsys, tmp_path, data_dir):
    _refused(capsys, ["run", "--task", "translation", "--data-dir", str(data_dir)], tmp_path / "out", "unknown task 'translation'")


def test_missing_data_file(capsys, tmp_path, tiny_classifier_dir):
    empty = tmp_path / "data"
    empty.mkdir()
    _refused(capsys, ["run", "--task", "sentiment", "--data-dir", str(empty), "--teacher", str(tiny_classifier_dir),
                      "--student", "1x32x4x64"], tmp_path / "out", "SST-2 file not found")


@pytest.mark.parametrize("teacher", ["gpt2_dir", "distilbert_dir"])
def test_teacher_that_is_not_bert(capsys, tmp_path, data_dir, teacher, request):
    folder = request.getfixturevalue(teacher)
    _refused(capsys, ["run", "--task", "spam", "--data-dir", str(data_dir), "--teacher", str(folder)], tmp_path / "out",
             "not BERT-family")


def test_student_with_other_head_count_and_bad_init(capsys, tmp_path, data_dir, tiny_classifier_dir):
    base = ["task", "--task", "spam", "--data-dir", str(data_dir), "--teacher", str(tiny_classifier_dir)]
    _refused(capsys, base + ["--student", "1x30x3x64"], tmp_path / "out", "the same number of heads")
    _refused(capsys, base + ["--student", "tinybert-9l"], tmp_path / "out", "unknown student preset")
    _refused(capsys, base + ["--student", "1x32x4x64", "--init", str(tmp_path / "nowhere")], tmp_path / "out", "--init")
    _refused(capsys, base + ["--set", "epochs=3"], tmp_path / "out", "unknown setting")
    _refused(capsys, base + ["--student", "1x32x4x64", "--set", "student_freeze_word_embeddings=true"], tmp_path / "out",
             "would keep a random word table")
    _refused(capsys, base + ["--student", "1x32x4x64", "--init", "random", "--preset", "medium"], tmp_path / "out",
             "would keep a random word table")
