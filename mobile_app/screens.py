"""The demo app's screens: one per task (classifier or question answering) and one for a missing bundle.

Each task screen owns a runtime TaskRunner (mobile_app.runtime) and only shows what it returns; no
tokenizing or inference happens here. Inference runs on a worker thread so that a 10k-character input
never freezes the window; the result comes back to the UI thread through Clock.
"""
from __future__ import annotations

import logging
import threading

from kivy.clock import Clock
from kivy.graphics import Color, Rectangle
from kivy.metrics import dp, sp
from kivy.properties import BooleanProperty, ColorProperty, NumericProperty
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.gridlayout import GridLayout
from kivy.uix.label import Label
from kivy.uix.scrollview import ScrollView
from kivy.uix.spinner import Spinner
from kivy.uix.textinput import TextInput
from kivy.uix.widget import Widget
from kivy.utils import escape_markup

log = logging.getLogger("mobile_app")

BACKGROUND = (0.11, 0.12, 0.14, 1)
ACCENT = (0.29, 0.62, 0.95, 1)
HIGHLIGHT_HEX = "ffc94d"
MUTED = (0.65, 0.68, 0.72, 1)
MONOSPACE = "RobotoMono-Regular"  # ships with Kivy
PASSAGE_WINDOW_CHARS = 1200  # longest passage excerpt drawn; a 10k-char texture is too tall for phone GPUs


class InputProblem(ValueError):
    """The inputs cannot be run as they are (e.g. empty); the message says what to do."""


def highlight_answer(passage: str, start: int, end: int, window: int = PASSAGE_WINDOW_CHARS) -> str:
    """Label markup of the passage with passage[start:end] in bold colour; user text is escaped.

    Passages longer than `window` are cut to an excerpt centred on the answer, with an ellipsis.
    """
    start = max(0, min(int(start), len(passage)))
    end = max(start, min(int(end), len(passage)))
    lo, hi = 0, len(passage)
    if hi > window:
        room = max(0, window - (end - start)) // 2
        lo = max(0, start - room)
        hi = min(len(passage), max(end + room, lo + window))
    before = ("…" if lo > 0 else "") + passage[lo:start]
    after = passage[end:hi] + ("…" if hi < len(passage) else "")
    answer = passage[start:end]
    marked = f"[b][color={HIGHLIGHT_HEX}]{escape_markup(answer)}[/color][/b]" if answer else ""
    return escape_markup(before) + marked + escape_markup(after)


def artifact_title(runner) -> str:
    """What runs, as the screens show it: backend, precision and the file the interpreter picked (a bundle may hold one per
    runtime profile), e.g. 'tflite int8-dynamic · sentiment_int8-dynamic_rt2.22.tflite'."""
    return f"{runner.fmt} {runner.precision} · {runner.artifact_name}"


def wrapped_label(text: str = "", font_size: float = 15, color=(1, 1, 1, 1), **kwargs) -> Label:
    """A left-aligned Label that wraps to its width and grows to its text's height."""
    label = Label(text=text, font_size=sp(font_size), color=color, halign="left", valign="top",
                  size_hint_y=None, **kwargs)
    label.bind(width=lambda lbl, w: setattr(lbl, "text_size", (w, None)),
               texture_size=lambda lbl, ts: setattr(lbl, "height", ts[1]))
    return label


class Backdrop(BoxLayout):
    """A vertical box painted with the app background, so PNG exports are opaque and readable."""

    def __init__(self, **kwargs):
        kwargs.setdefault("orientation", "vertical")
        super().__init__(**kwargs)
        with self.canvas.before:
            Color(*BACKGROUND)
            self._rect = Rectangle(pos=self.pos, size=self.size)
        self.bind(pos=lambda *_: setattr(self._rect, "pos", self.pos), size=lambda *_: setattr(self._rect, "size", self.size))


class ConfidenceBar(Widget):
    """A horizontal bar filled to `value` (0..1)."""

    value = NumericProperty(0.0)
    color = ColorProperty(ACCENT)

    def __init__(self, **kwargs):
        kwargs.setdefault("size_hint_y", None)
        kwargs.setdefault("height", dp(14))
        super().__init__(**kwargs)
        with self.canvas:
            Color(0.25, 0.27, 0.30, 1)
            self._track = Rectangle()
            self._fill_color = Color(*self.color)
            self._fill = Rectangle()
        self.bind(pos=self._redraw, size=self._redraw, value=self._redraw, color=self._redraw)
        self._redraw()

    def _redraw(self, *_):
        self._track.pos, self._track.size = self.pos, self.size
        self._fill_color.rgba = self.color
        self._fill.pos = self.pos
        self._fill.size = (self.width * max(0.0, min(1.0, float(self.value))), self.height)


class TaskScreen(Backdrop):
    """Shared frame of a task screen: artifact + precision picker, examples, inputs, Run, result, latency.

    Subclasses build their inputs and result views and say how to read the inputs and show a result.
    """

    busy = BooleanProperty(False)

    def __init__(self, task: str, runner, examples, **kwargs):
        super().__init__(padding=dp(10), spacing=dp(8), **kwargs)
        self.task = task
        self.runner = runner
        self.examples = list(examples)
        self.last_result = None      # what the runtime returned for the last run
        self.last_latency_ms = None
        self.last_error = None       # one-line message of the last failed run
        self._build_header()
        self._build_examples()
        self.build_inputs()
        self.run_button = Button(text="Run", size_hint_y=None, height=dp(46), font_size=sp(18), bold=True,
                                 background_normal="", background_color=ACCENT)
        self.run_button.bind(on_release=self.run)
        self.add_widget(self.run_button)
        self.build_result()
        self.status = wrapped_label("Tap an example or type, then press Run.", font_size=13, color=MUTED)
        self.add_widget(self.status)

    # -- frame -------------------------------------------------------------------------------------------
    def _build_header(self):
        row = BoxLayout(size_hint_y=None, height=dp(36), spacing=dp(8))
        self.artifact_label = Label(text="", font_size=sp(14), color=MUTED, halign="left", valign="middle")
        self.artifact_label.bind(size=lambda lbl, s: setattr(lbl, "text_size", s))
        row.add_widget(self.artifact_label)
        self.precision_picker = Spinner(text=self.runner.precision, values=list(self.runner.app_choices()),
                                        size_hint_x=None, width=dp(150), font_size=sp(14))
        self.precision_picker.bind(text=self._on_precision)
        row.add_widget(self.precision_picker)
        self.add_widget(row)
        self._show_artifact()

    def _show_artifact(self):
        self.artifact_label.text = f"Model: {artifact_title(self.runner)}"

    def _on_precision(self, _spinner, precision):
        if not precision or self.busy:
            return
        try:
            self.runner.set_precision(precision)
        except Exception as error:  # a bad artifact must not take the app down; say what happened
            log.exception("switching %s to %s failed", self.task, precision)
            self._show_error(f"cannot switch to {precision}: {error}")
            self.precision_picker.text = self.runner.precision  # show what still runs
        self._show_artifact()

    def _build_examples(self):
        self.add_widget(Label(text="Examples (tap to run)", font_size=sp(13), color=MUTED, size_hint_y=None,
                              height=dp(20)))
        grid = GridLayout(cols=1, spacing=dp(4), size_hint_y=None)
        grid.bind(minimum_height=grid.setter("height"))
        self.example_buttons = []
        for index, example in enumerate(self.examples):
            button = Button(text=self.example_title(example), size_hint_y=None, height=dp(34), font_size=sp(13),
                            shorten=True, shorten_from="right", halign="left", valign="middle")
            button.bind(size=lambda btn, s: setattr(btn, "text_size", (s[0] - dp(16), s[1])))
            button.bind(on_release=lambda _btn, i=index: self.tap_example(i))
            grid.add_widget(button)
            self.example_buttons.append(button)
        self.add_widget(grid)

    def tap_example(self, index: int) -> None:
        """Fill the inputs with example `index` and run it (ignored while a run is in progress)."""
        if self.busy:
            return
        self.fill_inputs(self.examples[index])
        self.run()

    # -- running -----------------------------------------------------------------------------------------
    def run(self, *_):
        """Read the inputs and run the model on a worker thread; the result is shown when it is back."""
        if self.busy:
            return
        try:
            args = self.read_inputs()
        except InputProblem as problem:
            self._show_error(str(problem))
            return
        self.busy = True
        self.run_button.disabled = self.precision_picker.disabled = True
        self.status.text = "Running…"
        threading.Thread(target=self._work, args=args, daemon=True, name=f"infer-{self.task}").start()

    def _work(self, *args):
        try:
            result, latency_ms = self.infer(*args)
            outcome = (result, latency_ms, None)
        except Exception as error:  # shown on screen; the app keeps running
            log.exception("%s inference failed", self.task)
            outcome = (None, None, f"{type(error).__name__}: {error}")
        Clock.schedule_once(lambda _dt: self._finish(*outcome))

    def _finish(self, result, latency_ms, error):
        self.busy = False
        self.run_button.disabled = self.precision_picker.disabled = False
        if error is not None:
            self._show_error(error)
            return
        self.last_result, self.last_latency_ms, self.last_error = result, latency_ms, None
        self.show_result(result)
        self.status.color = MUTED
        self.status.text = f"{artifact_title(self.runner)}  ·  {latency_ms:.1f} ms"

    def _show_error(self, message: str):
        self.last_error = message
        self.status.color = (1, 0.45, 0.4, 1)
        self.status.text = message

    # -- per task ----------------------------------------------------------------------------------------
    def example_title(self, example) -> str:
        raise NotImplementedError

    def build_inputs(self):
        raise NotImplementedError

    def fill_inputs(self, example):
        raise NotImplementedError

    def read_inputs(self) -> tuple:
        raise NotImplementedError

    def infer(self, *args):
        raise NotImplementedError

    def build_result(self):
        raise NotImplementedError

    def show_result(self, result):
        raise NotImplementedError


class ClassifyScreen(TaskScreen):
    """A classifier: a text (or a text pair) in, the label with a confidence bar per class out; many classes scroll."""

    @property
    def is_pair(self) -> bool:
        return bool(self.runner.manifest.get("text_pair"))

    def example_title(self, example):
        return example["text"] + (f"  |  {example['text_pair']}" if example.get("text_pair") else "")

    def build_inputs(self):
        hint = "First text" if self.is_pair else "Type a text to classify"
        self.text_input = TextInput(hint_text=hint, multiline=True, font_size=sp(15), size_hint_y=None,
                                    height=dp(64 if self.is_pair else 96))
        self.add_widget(self.text_input)
        self.pair_input = None
        if self.is_pair:
            self.pair_input = TextInput(hint_text="Second text", multiline=True, font_size=sp(15), size_hint_y=None, height=dp(64))
            self.add_widget(self.pair_input)

    def fill_inputs(self, example):
        self.text_input.text = example["text"]
        self.text_input.cursor = (0, 0)
        if self.pair_input is not None:
            self.pair_input.text = example.get("text_pair", "")
            self.pair_input.cursor = (0, 0)

    def read_inputs(self):
        text = self.text_input.text
        pair = self.pair_input.text if self.pair_input is not None else None
        if not text.strip() or (pair is not None and not pair.strip()):
            raise InputProblem("Type some text (or tap an example) before pressing Run." if pair is None else
                               "Type both texts (or tap an example) before pressing Run.")
        return (text, pair)

    def infer(self, text, pair):
        return self.runner.classify(text, pair)

    def build_result(self):
        box = BoxLayout(orientation="vertical", spacing=dp(6))
        self.label_view = Label(text="", font_size=sp(26), bold=True, size_hint_y=None, height=dp(40),
                                halign="left", valign="middle", shorten=True, shorten_from="right")
        self.label_view.bind(size=lambda lbl, s: setattr(lbl, "text_size", s))
        box.add_widget(self.label_view)
        rows = GridLayout(cols=1, spacing=dp(6), size_hint_y=None)
        rows.bind(minimum_height=rows.setter("height"))
        self.class_rows = {}
        for name in self.runner.manifest.get("labels", []):
            row = BoxLayout(size_hint_y=None, height=dp(24), spacing=dp(8))
            name_label = Label(text=str(name), font_size=sp(14), size_hint_x=None, width=dp(110), halign="left", valign="middle",
                               shorten=True, shorten_from="right")
            name_label.bind(size=lambda lbl, s: setattr(lbl, "text_size", s))
            bar = ConfidenceBar(size_hint_y=None, height=dp(14), pos_hint={"center_y": 0.5})
            percent = Label(text="", font_size=sp(14), size_hint_x=None, width=dp(60))
            row.add_widget(name_label)
            row.add_widget(bar)
            row.add_widget(percent)
            rows.add_widget(row)
            self.class_rows[str(name)] = (bar, percent)
        scroll = ScrollView(do_scroll_x=False, bar_width=dp(4))  # as many classes as the bundle has: they scroll
        scroll.add_widget(rows)
        box.add_widget(scroll)
        self.add_widget(box)

    def show_result(self, prediction):
        self.label_view.text = f"{prediction.label}   {prediction.confidence:.1%}"
        for name, (bar, percent) in self.class_rows.items():
            p = float(prediction.probabilities.get(name, 0.0))
            bar.value = p
            bar.color = ACCENT if name == prediction.label else MUTED
            percent.text = f"{p:.1%}"


class AnswerScreen(TaskScreen):
    """Extractive QA: a question and a passage in, the answer highlighted in the passage out."""

    def example_title(self, example):
        return example["question"]

    def build_inputs(self):
        self.question_input = TextInput(hint_text="Question", multiline=False, font_size=sp(15), size_hint_y=None, height=dp(40))
        self.passage_input = TextInput(hint_text="Passage to search for the answer", multiline=True, font_size=sp(14),
                                       size_hint_y=None, height=dp(110))
        self.add_widget(self.question_input)
        self.add_widget(self.passage_input)

    def fill_inputs(self, example):
        self.question_input.text, self.passage_input.text = example["question"], example["context"]
        self.question_input.cursor = self.passage_input.cursor = (0, 0)  # show the start, not the end

    def read_inputs(self):
        question, passage = self.question_input.text, self.passage_input.text
        if not question.strip() or not passage.strip():
            raise InputProblem("Type a question and a passage (or tap an example) before pressing Run.")
        self.asked_passage = passage  # the answer's offsets refer to this text, even if the box is edited meanwhile
        return (question, passage)

    def infer(self, question, passage):
        return self.runner.answer(question, passage)

    def build_result(self):
        self.answer_view = wrapped_label("", font_size=18, markup=True)
        self.add_widget(self.answer_view)
        scroll = ScrollView(do_scroll_x=False, bar_width=dp(4))
        self.passage_view = wrapped_label("", font_size=14, markup=True, color=(0.88, 0.89, 0.91, 1))
        scroll.add_widget(self.passage_view)
        self.add_widget(scroll)

    def show_result(self, answer):
        passage = self.asked_passage
        if not answer.text:
            self.answer_view.text = "No answer found in this passage."
            self.passage_view.text = escape_markup(passage[:PASSAGE_WINDOW_CHARS])
            return
        self.answer_view.text = (f"[b][color={HIGHLIGHT_HEX}]{escape_markup(answer.text)}[/color][/b]"
                                 f"   [size={int(sp(13))}]score {answer.score:.2f}[/size]")
        self.passage_view.text = highlight_answer(passage, answer.start_char, answer.end_char)


class MissingBundleScreen(Backdrop):
    """Shown instead of a task screen when a bundle cannot be loaded (task: its folder) or there is none (task None);
    says how to build one."""

    def __init__(self, task: str | None, bundle_dir, problem: str, fmt: str = "tflite", **kwargs):
        super().__init__(padding=dp(18), spacing=dp(12), **kwargs)
        self.task = task
        self.problem = problem
        if task is None:
            self.add_widget(wrapped_label("No models yet", font_size=22, bold=True))
            self.add_widget(wrapped_label(f"The app shows one tab per bundle in {bundle_dir}, and found none:", font_size=15))
            target = f"{bundle_dir}/NAME"
        else:  # a bundle that is there but refused (tampered, mixed, unreadable)
            self.add_widget(wrapped_label(f"The {task} model was refused", font_size=22, bold=True))
            self.add_widget(wrapped_label(f"The app could not load the bundle in {bundle_dir}:", font_size=15))
            target = str(bundle_dir)
        self.add_widget(wrapped_label(problem, font_size=14, color=(1, 0.6, 0.5, 1)))
        self.add_widget(wrapped_label("Build the demo bundles with:", font_size=14, color=MUTED))
        self.add_widget(wrapped_label("make demo", font_size=14, font_name=MONOSPACE))
        self.add_widget(wrapped_label("or export a model of your own with:", font_size=14, color=MUTED))
        self.add_widget(wrapped_label(f"python -m export {fmt} MODEL_DIR --out {target}", font_size=14, font_name=MONOSPACE))
        self.add_widget(wrapped_label("then start the app again with --bundles pointing at the folder that holds them.",
                                      font_size=14, color=MUTED))
        self.add_widget(Widget())
