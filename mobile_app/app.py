"""The Kivy demo app: one tab per bundle found in BUNDLES/, each running its model through the runtime.

`DemoApp(bundles_dir).run()` starts it; `python -m mobile_app --bundles DIR` is the command line. Everything a tab
shows comes from its bundle: the title, the labels, one text or a text pair, the example inputs. A bundle that is
refused, or a folder without bundles, gets a screen that says how to build one, never a crash.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.metrics import dp, sp
from kivy.uix.tabbedpanel import TabbedPanel, TabbedPanelItem

from mobile_app.runtime import load_task
from mobile_app.runtime.backend_factory import on_android
from mobile_app.runtime.bundle import BundleError, find_bundles, read_manifest
from mobile_app.screens import BACKGROUND, AnswerScreen, ClassifyScreen, MissingBundleScreen, artifact_title

NO_BUNDLES = "bundles"  # the one tab of a folder without bundles
log = logging.getLogger("mobile_app")
SCREEN_TIMEOUT_S = 120.0  # --screenshot gives up on a screen whose inference never comes back


def task_screen(bundle_dir: str | Path, fmt: str = "tflite"):
    """The screen of one bundle: a ClassifyScreen/AnswerScreen on it, or a MissingBundleScreen saying why not."""
    bundle_dir = Path(bundle_dir)
    task = bundle_dir.name
    try:
        runner = load_task(bundle_dir, fmt=fmt)
    except BundleError as error:
        return MissingBundleScreen(task, bundle_dir, str(error), fmt)
    except Exception as error:  # e.g. an interpreter that rejects the model on a phone: show it, keep the other tabs
        log.exception("opening the %s bundle failed", task)
        return MissingBundleScreen(task, bundle_dir, f"the {fmt} model could not be opened ({type(error).__name__}: {error})", fmt)
    screen_type = AnswerScreen if runner.manifest.get("head") == "qa" else ClassifyScreen
    return screen_type(task, runner, runner.manifest.get("examples") or [])


def tab_title(bundle_dir: Path) -> str:
    """The bundle's own title (its folder name when the manifest cannot be read)."""
    try:
        return str(read_manifest(bundle_dir).get("title") or bundle_dir.name)
    except BundleError:
        return bundle_dir.name


class DemoRoot(TabbedPanel):
    """One tab per bundle in `bundles_dir`; `screens[name]` is the content of the tab of bundle folder `name`."""

    def __init__(self, bundles_dir: str | Path, start_task: str | None = None, fmt: str = "tflite", **kwargs):
        super().__init__(do_default_tab=False, tab_height=dp(42), background_color=BACKGROUND, **kwargs)
        self.screens = {}
        self.tabs = {}
        found = find_bundles(bundles_dir)
        for bundle_dir in found:
            self._add_tab(bundle_dir.name, tab_title(bundle_dir), task_screen(bundle_dir, fmt))
        if not found:
            self._add_tab(NO_BUNDLES, "No bundles", MissingBundleScreen(None, Path(bundles_dir), f"no bundles in {bundles_dir}", fmt))
        self.order = list(self.tabs)
        # tabs share the width; past four they keep a readable width and the strip scrolls
        self.bind(width=lambda panel, w: setattr(panel, "tab_width", max(w / len(self.order), min(w / 4, dp(120)))))
        Clock.schedule_once(lambda _dt: self.show(start_task if start_task in self.tabs else self.order[0]))

    def _add_tab(self, name: str, title: str, screen) -> None:
        tab = TabbedPanelItem(text=title, font_size=sp(15), shorten=True, shorten_from="right")
        tab.bind(size=lambda item, size: setattr(item, "text_size", (size[0] - dp(8), None)))
        tab.content = self.screens[name] = screen
        self.add_widget(tab)
        self.tabs[name] = tab

    def show(self, task: str) -> None:
        """Bring a task's tab to the front."""
        self.switch_to(self.tabs[task])


class ScreenshotTour:
    """Drive a started app offscreen: for each task, run its first example, save TASK.png, print a JSON line, exit.

    The JSON lines (task, label or answer, latency, png, seconds since the app started) are what
    benchmarks/bench_app.py reads to time a cold start to the first result.
    """

    def __init__(self, app: "DemoApp", out_dir: Path, order: list[str]):
        self.app, self.out_dir, self.order = app, out_dir, list(order)
        self.started = time.perf_counter()
        self.failures = 0

    def start(self):
        Clock.schedule_once(lambda _dt: self._next())

    def _next(self):
        if not self.order:
            self.app.stop()
            return
        task = self.order.pop(0)
        self.app.root.show(task)
        screen = self.app.root.screens[task]
        if getattr(screen, "examples", None):
            screen.tap_example(0)
        self._wait(task, screen, time.perf_counter())

    def _wait(self, task, screen, since):
        if getattr(screen, "busy", False) and time.perf_counter() - since < SCREEN_TIMEOUT_S:
            Clock.schedule_once(lambda _dt: self._wait(task, screen, since))
            return
        # Two frames later the result is laid out and drawn; then export it.
        Clock.schedule_once(lambda _dt: Clock.schedule_once(lambda _dt2: self._save(task, screen)))

    def _save(self, task, screen):
        png = self.out_dir / f"{task}.png"
        self.app.root.export_to_png(str(png))
        report = {"task": task, "png": str(png), "seconds": round(time.perf_counter() - self.started, 3)}
        result = getattr(screen, "last_result", None)
        if result is not None:
            report.update(latency_ms=screen.last_latency_ms, artifact=artifact_title(screen.runner),
                          result=getattr(result, "label", None) or getattr(result, "text", None))
        else:
            report["problem"] = getattr(screen, "last_error", None) or getattr(screen, "problem", None) or "no result"
            self.failures += 1
        print(json.dumps(report, ensure_ascii=False), flush=True)
        self._next()


class DemoApp(App):
    """The TinyBERT demo; `screenshot_dir` makes it render every screen to PNG and exit."""

    title = "TinyBERT mobile demo"

    def __init__(self, bundles_dir: str | Path, start_task: str | None = None, screenshot_dir: str | Path | None = None,
                 fmt: str = "tflite", **kwargs):
        super().__init__(**kwargs)
        self.bundles_dir = Path(bundles_dir)
        self.fmt = fmt
        self.start_task = start_task
        self.screenshot_dir = Path(screenshot_dir) if screenshot_dir is not None else None
        self.tour = None

    def build(self):
        Window.clearcolor = BACKGROUND
        if on_android():  # pyjnius loads the APK's Java classes only on this, the main thread
            from mobile_app.runtime.backends import BackendUnavailableError
            from mobile_app.runtime.litert_android import load_java_classes

            try:
                load_java_classes()
            except BackendUnavailableError as error:  # each tab then shows why its model cannot open
                log.error("%s", error)
        return DemoRoot(self.bundles_dir, self.start_task, self.fmt)

    def on_start(self):
        if self.screenshot_dir is not None:
            order = self.root.order
            first = self.start_task if self.start_task in order else order[0]
            self.tour = ScreenshotTour(self, self.screenshot_dir, [first] + [t for t in order if t != first])
            self.tour.start()


def run_app(bundles_dir: str | Path, start_task: str | None = None, screenshot_dir: str | Path | None = None,
            fmt: str = "tflite") -> int:
    """Run the app until it is closed (or, with screenshot_dir, until every screen is saved); the exit status."""
    app = DemoApp(bundles_dir, start_task, screenshot_dir, fmt)
    app.run()
    if app.tour is not None and app.tour.failures:
        # Kivy replaces sys.stderr with its own logger: the summary goes to the terminal's stderr itself
        print(f"error: {app.tour.failures} screen(s) showed no result; see the JSON lines above", file=sys.__stderr__ or sys.stderr)
        return 1
    return 0
