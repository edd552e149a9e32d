"""The distill command line: its sub-commands, and bad input refused with one line, exit 2 and nothing written."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from distill.__main__ import main
from tests.conftest import REPO_ROOT
from tests.tiny_models import make_tiny_bert


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
                      "--student", "1x32x4x64"], tmp_path / "out", f"not found at {empty / 'sst2' / 'train.tsv'}")


def test_teacher_that_is_not_bert(capsys, tmp_path, data_dir, gpt2_dir):
    _refused(capsys, ["run", "--task", "spam", "--data-dir", str(data_dir), "--teacher", str(gpt2_dir)], tmp_path / "out",
             "not BERT-family")


def test_student_with_other_head_count_and_bad_init(capsys, tmp_path, data_dir, tiny_spam_dir):
    base = ["task", "--task", "spam", "--data-dir", str(data_dir), "--teacher", str(tiny_spam_dir)]
    _refused(capsys, base + ["--student", "1x30x3x64"], tmp_path / "out", "the same number of heads")
    _refused(capsys, base + ["--student", "tinybert-9l"], tmp_path / "out", "unknown student preset")
    _refused(capsys, base + ["--student", "1x32x4x64", "--init", str(tmp_path / "nowhere")], tmp_path / "out", "--init")
    _refused(capsys, base + ["--set", "epochs=3"], tmp_path / "out", "unknown setting")
    _refused(capsys, base + ["--student", "1x32x4x64", "--init", "general", "--set", "student_freeze_word_embeddings=true"], tmp_path / "out",
             "would keep a random word table")
    _refused(capsys, base + ["--student", "1x32x4x64", "--init", "random", "--preset", "medium"], tmp_path / "out",
             "would keep a random word table")


def test_teacher_whose_labels_or_head_do_not_fit_the_task_is_refused(capsys, tmp_path, data_dir, tiny_classifier_dir, tiny_qa_dir):
    swapped = make_tiny_bert(tmp_path / "swapped", labels=("positive", "negative"))
    three = make_tiny_bert(tmp_path / "three", labels=("negative", "neutral", "positive"))
    capsys.readouterr()  # the tiny models' save progress is not the command's output
    run = ["run", "--data-dir", str(data_dir), "--student", "1x32x4x64", "--task"]
    # a sentiment classifier (negative/positive) is not a spam teacher
    _refused(capsys, run + ["spam", "--teacher", str(tiny_classifier_dir)], tmp_path / "out",
             "has labels negative, positive; task spam needs ham, spam in that order")
    _refused(capsys, run + ["sentiment", "--teacher", f"sentiment={swapped}"], tmp_path / "out", "has labels positive, negative")
    _refused(capsys, run + ["sentiment", "--teacher", str(three)], tmp_path / "out", "has labels negative, neutral, positive")
    _refused(capsys, run + ["sentiment", "--teacher", str(tiny_qa_dir)], tmp_path / "out",
             "is a BertForQuestionAnswering, not a BertForSequenceClassification for sentiment")
    _refused(capsys, run + ["qa", "--teacher", str(tiny_classifier_dir)], tmp_path / "out",
             "is a BertForSequenceClassification, not a BertForQuestionAnswering for qa")


def test_teacher_flag_forms(capsys, tmp_path, data_dir, tiny_classifier_dir):
    run = ["run", "--task", "sentiment", "--data-dir", str(data_dir)]
    _refused(capsys, run + ["--teacher", f"sst2={tiny_classifier_dir}"], tmp_path / "out", "'sst2' is not a task of this run")
    _refused(capsys, run + ["--teacher", "sentiment="], tmp_path / "out", "names no teacher")
    _refused(capsys, run + ["--teacher", f"spam={tiny_classifier_dir}"], tmp_path / "out", "'spam' is not a task of this run")
    _refused(capsys, run + ["--teachers", str(tmp_path)], tmp_path / "out", "has no sentiment/ teacher")
