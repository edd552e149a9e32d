"""`--teacher [TASK=]PATH_OR_HUB_ID` and `--teachers DIR`: which teacher each task distils from, bad forms refused."""
from __future__ import annotations

import pytest

from mobile_app.runtime.errors import UserError
from distill.teacher_spec import parse_teacher_spec, teachers_for

TASKS = ("sentiment", "spam", "qa")


def _teacher_dirs(root, *tasks):
    for task in tasks:
        (root / task).mkdir(parents=True)
        (root / task / "config.json").write_text("{}")
    return root


def test_task_forms_and_bare_forms():
    assert parse_teacher_spec("sentiment=/models/sst2") == ("sentiment", "/models/sst2")
    assert parse_teacher_spec("qa=google-bert/bert-large-uncased-whole-word-masking-finetuned-squad") == (
        "qa", "google-bert/bert-large-uncased-whole-word-masking-finetuned-squad")
    assert parse_teacher_spec("owner/name") == (None, "owner/name")
    assert parse_teacher_spec("spam=a=b") == ("spam", "a=b")  # only the first '=' splits
    assert teachers_for(TASKS, ["sentiment=S", "qa=Q"]) == {"sentiment": "S", "qa": "Q"}
    assert teachers_for(TASKS, ["ALL", "qa=Q"]) == {"sentiment": "ALL", "spam": "ALL", "qa": "Q"}
    assert teachers_for(TASKS, None) == {}


@pytest.mark.parametrize("specs, message", [
    (["=/models/x"], "'' is not a task of this run"),
    (["sst2=/models/x"], "'sst2' is not a task of this run"),
    (["sentiment="], "names no teacher"),
    ([""], "empty value"),
    (["spam=A", "spam=B"], "names spam twice"),
    (["A", "B"], "twice without a task"),
    (["qa=Q"], "'qa' is not a task of this run"),
])
def test_bad_forms_are_refused_with_one_line(specs, message):
    with pytest.raises(UserError, match=message) as error:
        teachers_for(("sentiment", "spam"), specs)
    assert "\n" not in str(error.value)


def test_teachers_dir_gives_each_task_its_folder_and_task_flags_win(tmp_path):
    root = _teacher_dirs(tmp_path / "models", "sentiment", "spam", "qa")
    assert teachers_for(TASKS, None, root) == {task: str(root / task) for task in TASKS}
    assert teachers_for(TASKS, ["spam=OTHER"], root)["spam"] == "OTHER"
    with pytest.raises(UserError, match="not both"):
        teachers_for(TASKS, ["ALL"], root)


def test_teachers_dir_without_a_task_folder_is_refused(tmp_path):
    root = _teacher_dirs(tmp_path / "models", "sentiment")
    with pytest.raises(UserError, match=r"has no spam/ teacher"):
        teachers_for(("sentiment", "spam"), None, root)
    assert teachers_for(("sentiment",), None, root) == {"sentiment": str(root / "sentiment")}
    with pytest.raises(UserError, match="is not a folder"):
        teachers_for(("sentiment",), None, tmp_path / "nowhere")
    with pytest.raises(UserError, match="has no topics/ teacher"):  # a user's task reads DIR/<its name>/ too
        teachers_for(("topics",), None, root)
