"""The real Kivy demo app, offscreen, on real tiny TFLite bundles run by the real runtime.

Kivy allows one Window per process and reads its settings when first imported, so this module sets them
before importing Kivy and keeps every in-process app test here; the command-line tests start their own
process. Touches go through the Window (real hit-testing), typing goes through TextInput.insert_text.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_NO_FILELOG", "1")
os.environ.setdefault("KIVY_HOME", tempfile.mkdtemp(prefix="kivy-home-"))
os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "int8-dynamic")
# (task, head, labels, buckets). Conversion time grows with every layer and bucket signature, so the students
# have one layer and one bucket each (bucket choice is the runtime's, tested there); this keeps the module
# inside its time budget when run alone. conftest's shared tiny bundles (2 layers, 2 buckets, 4 precisions
# incl. calibrated int8-static) alone take longer than that budget on a busy 2-core machine.
APP_BUNDLES = (("sentiment", "classification", ("negative", "positive"), (32,)),
               ("spam", "classification", ("ham", "spam"), (32,)),
               ("qa", "qa", (), (128,)))


@pytest.fixture(scope="module")
def bundles_dir(tmp_path_factory) -> Path:
    """BUNDLES/{sentiment,spam,qa}: real TFLite exports (fp32, int8-dynamic) of tiny random BERTs with the real vocab."""
    from export.tflite import export_tflite
    from tests.tiny_models import make_tiny_bert

    root = tmp_path_factory.mktemp("app_bundles")
    for seed, (task, head, labels, buckets) in enumerate(APP_BUNDLES):
        student = make_tiny_bert(tmp_path_factory.mktemp(f"tiny_{task}"), head=head, labels=labels or ("negative", "positive"), layers=1, seed=seed)
        export_tflite(student, root / task, precisions=list(PRECISIONS), task=task, buckets=list(buckets), progress=False)
    return root


@pytest.fixture(scope="module")
def window():
    from kivy.base import EventLoop

    EventLoop.ensure_window()
    EventLoop.window.size = (480, 860)
    return EventLoop.window


@pytest.fixture()
def mounted(window):
    """mount(root) puts a widget tree on the Window for one test and takes it off afterwards."""
    roots = []

    def mount(root):
        window.add_widget(root)
        roots.append(root)
        pump(frames=3)
        return root

    yield mount
    for root in roots:
        window.remove_widget(root)


def pump(until=None, timeout: float = 30.0, frames: int = 2) -> None:
    """Run the event loop until `until()` holds (or for `frames` frames), failing after `timeout` seconds."""
    from kivy.base import EventLoop

    deadline = time.monotonic() + timeout
    while until is not None and not until():
        assert time.monotonic() < deadline, "the app did not finish in time"
        EventLoop.idle()
    for _ in range(frames):
        EventLoop.idle()


def tap(widget) -> None:
    """A real touch down/up at the widget's centre, dispatched through the Window."""
    from kivy.tests.common import UnitTestTouch

    touch = UnitTestTouch(*widget.to_window(*widget.center))
    touch.touch_down()
    touch.touch_up()


def type_into(text_input, text: str) -> None:
    text_input.focus = True
    text_input.select_all()
    text_input.delete_selection()
    text_input.insert_text(text)
    text_input.focus = False


def run_and_wait(screen) -> None:
    tap(screen.run_button)
    assert screen.busy, f"pressing Run did not start a run: {screen.status.text}"
    pump(until=lambda: not screen.busy, frames=3)


def save_png(root, out_dir: Path, name: str) -> Path:
    path = out_dir / name
    root.export_to_png(str(path))
    assert path.stat().st_size > 5_000, f"{name} looks empty"
    return path


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    """Screenshots of every screen; set TINYBERT_APP_SHOTS to keep them somewhere to look at."""
    keep = os.environ.get("TINYBERT_APP_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("app_shots")


@pytest.fixture(scope="module")
def demo_root(bundles_dir, window):
    from mobile_app.app import DemoRoot

    return DemoRoot(bundles_dir, "sentiment")


def test_sentiment_tab_shows_the_runtime_prediction_for_typed_text(demo_root, mounted, bundles_dir, shots_dir, data_dir):
    from mobile_app.runtime import load_task
    from mobile_app.screens import ClassifyScreen

    root = mounted(demo_root)
    screen = root.screens["sentiment"]
    assert isinstance(screen, ClassifyScreen)
    text = next(line.rsplit("\t", 1)[0].strip() for i, line in enumerate((data_dir / "sst2" / "dev.tsv").open(encoding="utf-8")) if i == 7)
    type_into(screen.text_input, text)
    run_and_wait(screen)

    reference = load_task(bundles_dir / "sentiment", task="sentiment")
    expected, _ = reference.classify(text)
    assert screen.last_error is None
    assert screen.last_result.label == expected.label
    assert screen.label_view.text.startswith(expected.label)
    assert screen.last_result.probabilities == pytest.approx(expected.probabilities, abs=1e-4)
    assert screen.status.text.startswith(f"tflite {reference.precision}") and screen.status.text.endswith(" ms")
    bar, percent = screen.class_rows[expected.label]
    assert bar.value == pytest.approx(expected.confidence, abs=1e-4) and percent.text.endswith("%")
    save_png(root, shots_dir, "sentiment.png")


def test_spam_tab_runs_a_tapped_example_and_the_precision_picker_switches_artifacts(demo_root, mounted, bundles_dir, shots_dir):
    from mobile_app.runtime import load_task

    root = mounted(demo_root)
    root.show("spam")
    pump(frames=3)
    screen = root.screens["spam"]
    assert screen.precision_picker.values == list(PRECISIONS)

    tap(screen.example_buttons[0])
    pump(until=lambda: not screen.busy, frames=3)
    first = screen.runner.manifest["examples"][0]["text"]  # the bundle's own examples, from the task's definition
    assert screen.text_input.text == first
    reference = load_task(bundles_dir / "spam", task="spam")
    assert screen.last_result.label == reference.classify(first)[0].label
    assert screen.last_result.label in ("ham", "spam")

    other = next(p for p in PRECISIONS if p != screen.runner.precision)
    screen.precision_picker.text = other  # what choosing it in the dropdown does
    assert screen.runner.precision == other
    run_and_wait(screen)
    reference.set_precision(other)
    assert screen.last_result.label == reference.classify(first)[0].label
    assert screen.artifact_label.text == f"Model: tflite {other} · {screen.runner.artifact_name}"  # the file the interpreter picked
    assert screen.status.text.startswith(f"tflite {other}")
    save_png(root, shots_dir, "spam.png")


def test_qa_tab_highlights_the_runtime_answer_in_the_passage(demo_root, mounted, bundles_dir, shots_dir):
    from mobile_app.runtime import load_task
    from mobile_app.screens import HIGHLIGHT_HEX, AnswerScreen

    root = mounted(demo_root)
    root.show("qa")
    pump(frames=3)
    screen = root.screens["qa"]
    assert isinstance(screen, AnswerScreen)
    question, passage = screen.examples[0]["question"], screen.examples[0]["context"]
    type_into(screen.question_input, question)
    type_into(screen.passage_input, passage)
    run_and_wait(screen)

    expected, _ = load_task(bundles_dir / "qa", task="qa").answer(question, passage)
    assert screen.last_error is None
    assert screen.last_result.text == expected.text
    assert expected.text and passage[expected.start_char:expected.end_char] == expected.text
    assert f"[color={HIGHLIGHT_HEX}]" in screen.passage_view.text
    assert screen.passage_view.text.count("[/color]") == 1
    assert "score" in screen.answer_view.text and screen.status.text.endswith(" ms")
    save_png(root, shots_dir, "qa.png")


ODD_TEXTS = {
    "emoji": "great movie 😀🎬🔥 would watch again 👍",
    "mixed scripts": "Ce film est magnifique — 这部电影很好 — фильм отличный — الفيلم رائع — 映画は最高",
    "markup": "[b]bold[/b] [color=ff0000]red[/color] & [size=80]big[/size] ]][[",
    "control characters": "tab\there\x00nul\u200bzero-width\r\nnewline",
    "10k characters": ("a sometimes tedious film . " * 400)[:10_000],
}


@pytest.mark.parametrize("kind", list(ODD_TEXTS))
def test_odd_inputs_never_crash_the_app(demo_root, mounted, shots_dir, kind):
    from mobile_app.screens import HIGHLIGHT_HEX

    root = mounted(demo_root)
    text = ODD_TEXTS[kind]
    for task in ("sentiment", "qa"):
        root.show(task)
        screen = root.screens[task]
        if task == "qa":
            type_into(screen.question_input, text[:200])
            type_into(screen.passage_input, text)
        else:
            type_into(screen.text_input, text)
        run_and_wait(screen)
        assert screen.last_error is None, screen.last_error
        if task == "qa":
            shown = screen.passage_view.text
            for own_tag in (f"[b][color={HIGHLIGHT_HEX}]", "[/color][/b]"):
                shown = shown.replace(own_tag, "", 1)
            assert "[" not in shown and "]" not in shown  # user markup is escaped, never interpreted
            assert len(shown) < 2_000  # long passages are cut to an excerpt around the answer
            save_png(root, shots_dir, f"odd-{kind.replace(' ', '-')}.png")


def test_empty_input_asks_for_text_instead_of_running(demo_root, mounted):
    root = mounted(demo_root)
    screen = root.screens["sentiment"]
    root.show("sentiment")
    type_into(screen.text_input, "   \n ")
    previous = screen.last_result
    tap(screen.run_button)
    pump(frames=2)
    assert not screen.busy and screen.last_result is previous
    assert "Type some text" in screen.status.text


def test_missing_bundles_show_how_to_build_them(window, mounted, tmp_path, shots_dir):
    from mobile_app.app import NO_BUNDLES, DemoRoot
    from mobile_app.screens import MissingBundleScreen

    def texts(screen):
        return " ".join(child.text for child in screen.children if hasattr(child, "text"))

    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "bundle.json").write_text("{not json", encoding="utf-8")
    root = mounted(DemoRoot(tmp_path, "qa"))
    assert list(root.screens) == ["qa"]  # one tab per bundle folder: the refused one says why
    screen = root.screens["qa"]
    assert isinstance(screen, MissingBundleScreen) and "not valid JSON" in screen.problem
    assert screen.children[-1].text == "The qa model was refused"
    assert "make demo" in texts(screen) and "python -m export tflite" in texts(screen)
    save_png(root, shots_dir, "missing.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    root = mounted(DemoRoot(empty))
    assert list(root.screens) == [NO_BUNDLES] and root.screens[NO_BUNDLES].children[-1].text == "No models yet"
    assert f"no bundles in {empty}" == root.screens[NO_BUNDLES].problem and "make demo" in texts(root.screens[NO_BUNDLES])


def test_highlight_answer_escapes_user_markup_and_cuts_long_passages():
    from mobile_app.screens import HIGHLIGHT_HEX, highlight_answer

    marked = highlight_answer("say [b]hi[/b] to Ann & Bob", 17, 20)
    assert marked == f"say &bl;b&br;hi&bl;/b&br; to [b][color={HIGHLIGHT_HEX}]Ann[/color][/b] &amp; Bob"
    long = "x" * 5000 + "ANSWER" + "y" * 5000
    cut = highlight_answer(long, 5000, 5006, window=100)
    assert "ANSWER" in cut and cut.startswith("…") and cut.endswith("…") and len(cut) < 200
    assert highlight_answer("abc", 10, 20) == "abc"  # a span outside the passage highlights nothing


def _run_cli(*args, timeout=120):
    env = dict(os.environ, KIVY_HOME=tempfile.mkdtemp(prefix="kivy-home-"))
    return subprocess.run([sys.executable, "-m", "mobile_app", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_screenshot_renders_every_screen_and_reports_results(bundles_dir, tmp_path):
    done = _run_cli("--bundles", bundles_dir, "--task", "qa", "--screenshot", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["task"] for r in reports] == ["qa", "sentiment", "spam"]
    for report in reports:
        assert report["latency_ms"] > 0 and report["artifact"].startswith("tflite ")
        assert Path(report["png"]).stat().st_size > 5_000
    assert {r["task"]: r["result"] for r in reports}["spam"] in ("ham", "spam")


def test_cli_without_bundles_exits_1_and_still_renders_the_help_screens(tmp_path):
    done = _run_cli("--bundles", tmp_path / "none", "--screenshot", tmp_path / "shots")
    assert done.returncode == 1
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and reports[0]["problem"] == f"no bundles in {tmp_path / 'none'}"
    assert done.stderr.strip().splitlines()[-1] == "error: 1 screen(s) showed no result; see the JSON lines above"


def test_cli_refuses_an_unwritable_screenshot_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = _run_cli("--screenshot", blocker / "sub")
    assert done.returncode == 2 and "--screenshot" in done.stderr.splitlines()[-1]


def test_staged_phone_app_runs_alone_on_sliced_bundles(bundles_dir, tmp_path):
    from mobile_app.runtime.bundle import load_manifest
    from mobile_app.package_app import stage_app

    out = tmp_path / "android_app"
    sizes = stage_app(bundles_dir, out, fmt="tflite", precisions=["int8-dynamic"])
    assert sorted(sizes) == ["qa", "sentiment", "spam"]
    assert (out / "main.py").is_file() and (out / "mobile_app" / "runtime" / "task_runner.py").is_file()
    assert not (out / "mobile_app" / "package_app.py").exists()
    for task in sizes:
        manifest = load_manifest(out / "bundles" / task, task=task)  # hashes of what ships still check out
        assert [a["precision"] for a in manifest["artifacts"]] == ["int8-dynamic"]
        assert not (out / "bundles" / task / f"{task}_fp32.tflite").exists()
    # "default": per task, only the artifact the app opens when none is picked (these bundles have no int8-words4)
    stage_app(bundles_dir, tmp_path / "default_app", fmt="tflite", precisions=["default"])
    for task in sizes:
        assert [a["precision"] for a in load_manifest(tmp_path / "default_app" / "bundles" / task)["artifacts"]] == ["int8-dynamic"]

    # The staged folder is the whole app: its main.py runs from there and never needs the desktop kit.
    probe = ("import atexit, runpy, sys\n"
             "atexit.register(lambda: print('DESKTOP', sorted(m for m in ('torch', 'transformers', 'distill', 'export') if m in sys.modules)))\n"
             "atexit.register(lambda: print('FROM', sys.modules['mobile_app'].__file__))\n"
             f"sys.argv = ['main.py', '--screenshot', {str(tmp_path / 'shots')!r}]\n"
             "runpy.run_path('main.py', run_name='__main__')\n")
    env = dict(os.environ, KIVY_HOME=tempfile.mkdtemp(prefix="kivy-home-"))
    done = subprocess.run([sys.executable, "-c", probe], cwd=out, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "DESKTOP []" in done.stdout
    assert f"FROM {out / 'mobile_app' / '__init__.py'}" in done.stdout
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    # LiteRT opens each bundle's LiteRT-profile file, the one the default (litert) route ships
    assert [r["artifact"] for r in reports] == [f"tflite int8-dynamic · {t}_int8-dynamic_rt2.22.tflite" for t in ("sentiment", "spam", "qa")]


def test_staging_refuses_a_folder_without_bundles(tmp_path):
    from mobile_app.runtime.bundle import BundleError
    from mobile_app.package_app import stage_app

    with pytest.raises(BundleError, match="make demo"):
        stage_app(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
