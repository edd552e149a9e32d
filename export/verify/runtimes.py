"""The TFLite interpreters `verify` runs every artifact through, each in its own Python environment.

Phones do not run the desktop LiteRT the export is checked with: python-for-android's recipe builds TFLite 2.8,
Linux boards ship tflite-runtime wheels, and those need numpy 1.x. Each row of RUNTIMES pins one interpreter,
the Python it is built on and the folder (under the repo root) of its environment; None is the Python running
verify. The ARM64 rows run the aarch64 builds phones run, under QEMU user mode as a named CPU model
(export/verify/arm64.py). `python -m export.verify.runtimes install` (run by `make setup`) creates the side
environments; on a user's machine a missing Python or a failed install is one line and the runtime stays "not installed", under
CI=true it fails the setup. Standard library only: the Makefile runs this before anything else is imported.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from export.verify import arm64

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_VARIABLE = "TINYBERT_RUNTIMES_DIR"  # where the side environments live (default: the repo root)
STAMP_NAME = ".tinybert-runtime.json"
WORKER_MODULE = "export.verify.runtime_worker"


@dataclass(frozen=True)
class Runtime:
    """One interpreter release: `package` (distribution) at `version`, imported as `module`."""
    name: str                  # what --runtimes takes and reports print
    package: str
    version: str
    module: str                # ai_edge_litert / tflite_runtime / tensorflow: what backends.py finds there
    python: str                # major.minor of the environment's Python
    env: str | None            # environment folder under the repo root; None: the Python running verify
    requirements: tuple[str, ...] = ()
    why: str = ""
    cpu: str | None = None     # an aarch64 build, run under QEMU user mode as this CPU model (export/verify/arm64.py)
    example_share: float = 1.0  # of verify's --arm-examples, the share an emulated row runs (float compute is slow under QEMU)

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}" + (f" aarch64 ({self.cpu})" if self.cpu else "")

    @property
    def emulated(self) -> bool:
        return self.cpu is not None

    @property
    def tflite_version(self) -> str:
        """The TFLite runtime version inside: what a bundle's files are picked and checked by."""
        from mobile_app.runtime.runtime_versions import litert_tflite_version

        return litert_tflite_version(self.version) if self.module == "ai_edge_litert" else self.version

    def examples_of(self, available: int, arm_examples: int) -> int:
        """How many of `available` eval examples this runtime runs: all on x86-64, an emulated row its share of arm_examples."""
        if not self.emulated:
            return available
        return min(available, max(1, round(arm_examples * self.example_share)))

    def env_dir(self, root: Path | None = None) -> Path | None:
        return None if self.env is None else (root or runtimes_root()) / self.env

    def site_dir(self, root: Path | None = None) -> Path | None:
        """Where an emulated runtime's aarch64 wheels are (one folder per interpreter release, shared by CPU models)."""
        return self.env_dir(root) / f"site-{self.package}-{self.version}" if self.emulated else None

    def python_path(self, root: Path | None = None) -> Path:
        env = self.env_dir(root)
        if self.emulated:
            return arm64.userland(env) / arm64.PYTHON_IN_USERLAND
        return Path(sys.executable) if env is None else env / "bin" / "python"

    def stamp_path(self, root: Path | None = None) -> Path:
        return (self.site_dir(root) if self.emulated else self.env_dir(root)) / STAMP_NAME

    def command(self, qemu: str | None = None, root: Path | None = None) -> list[str]:
        """The argv that starts this runtime's Python: an emulated one under QEMU build `qemu` (default: the preferred
        one installed), as its CPU model."""
        if not self.emulated:
            return [str(self.python_path(root))]
        env = self.env_dir(root)
        return arm64.command(env, qemu or self.qemus(root)[0], self.cpu)

    def qemus(self, root: Path | None = None) -> list[str]:
        """The QEMU builds installed for an emulated runtime, preferred first."""
        return [folder for folder, _ in arm64.installed_qemus(self.env_dir(root))] if self.emulated else []

    def python_env(self, root: Path | None = None) -> dict:
        """PYTHONPATH additions of this runtime's worker: an emulated one's aarch64 site first."""
        return {"PYTHONPATH": str(self.site_dir(root))} if self.emulated else {}


# ARM64 rows: the aarch64 wheels in one userland, each on an ARMv8.0 core without dot-product (the Cortex-A53 of cheap
# phones) and an ARMv8.2 core with it (Cortex-A76), which take different int8 kernels in XNNPACK.
ARM64_ENV = ".venv-arm64"
ARM64_WHY = "the aarch64 build phones run, under QEMU user mode"
RUNTIMES: tuple[Runtime, ...] = (
    Runtime("ai-edge-litert-2.3", "ai-edge-litert", "2.3.0", "ai_edge_litert", "3.11", None,
            why="the desktop LiteRT of the main environment (pyproject.toml)"),
    Runtime("tflite-runtime-2.14", "tflite-runtime", "2.14.0", "tflite_runtime", "3.11", ".venv-tflite214",
            ("tflite-runtime==2.14.0", "numpy==1.24.4"), "the last tflite-runtime wheel; numpy 1.x as kivy-ios ships"),
    Runtime("tflite-runtime-2.13", "tflite-runtime", "2.13.0", "tflite_runtime", "3.10", ".venv-tflite213",
            ("tflite-runtime==2.13.0", "numpy==1.24.4"), "tflite-runtime 2.13 has no Python 3.11 wheel"),
    Runtime("tflite-2.8", "tensorflow-cpu", "2.8.4", "tensorflow", "3.10", ".venv-tf28",
            ("tensorflow-cpu==2.8.4", "numpy==1.23.5"), "TFLite 2.8 as python-for-android's tflite-runtime recipe builds it"),
    Runtime("ai-edge-litert-2.3-arm64-a53", "ai-edge-litert", "2.3.0", "ai_edge_litert", "3.11", ARM64_ENV,
            ("ai-edge-litert==2.3.0",), ARM64_WHY, cpu="cortex-a53"),
    Runtime("ai-edge-litert-2.3-arm64-a76", "ai-edge-litert", "2.3.0", "ai_edge_litert", "3.11", ARM64_ENV,
            ("ai-edge-litert==2.3.0",), ARM64_WHY, cpu="cortex-a76"),
    # the old interpreter opens the 2.8 profile's files, which compute in float: about 5x slower than hybrid int8 under QEMU
    Runtime("tflite-runtime-2.14-arm64-a53", "tflite-runtime", "2.14.0", "tflite_runtime", "3.11", ARM64_ENV,
            ("tflite-runtime==2.14.0", "numpy==1.24.4"), ARM64_WHY, cpu="cortex-a53", example_share=0.1),
)
BY_NAME = {runtime.name: runtime for runtime in RUNTIMES}


def runtimes_root() -> Path:
    return Path(os.environ.get(ROOT_VARIABLE) or REPO_ROOT)


def get_runtime(name: str) -> Runtime:
    runtime = BY_NAME.get(name)
    if runtime is None:
        raise ValueError(f"unknown runtime {name!r}; choose from {', '.join(BY_NAME)}")
    return runtime


def _stamp(runtime: Runtime) -> dict:
    """What an environment was installed for (an emulated runtime's site serves every CPU model of its release)."""
    return {"runtime": f"{runtime.package}-{runtime.version}-aarch64" if runtime.emulated else runtime.name,
            "requirements": list(runtime.requirements)}


def is_installed(runtime: Runtime, root: Path | None = None) -> bool:
    """The main environment always counts; a side environment once `install` finished it for these pins (an emulated one
    also needs a QEMU build)."""
    if runtime.env_dir(root) is None:
        return True
    if runtime.emulated and not runtime.qemus(root):
        return False
    try:
        return runtime.python_path(root).is_file() and json.loads(runtime.stamp_path(root).read_text(encoding="utf-8")) == _stamp(runtime)
    except (OSError, ValueError):
        return False


def installed_runtimes(root: Path | None = None) -> list[Runtime]:
    return [runtime for runtime in RUNTIMES if is_installed(runtime, root)]


def worker_env(extra: dict | None = None) -> dict:
    """Environment of a worker process: the repo's mobile_app and export first on its path (after an emulated runtime's
    aarch64 site, given as extra PYTHONPATH), quiet interpreters."""
    extra = dict(extra or {})
    paths = [extra.pop("PYTHONPATH", ""), str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def _version_of(python: str) -> str | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_python(version: str) -> str | None:
    """A Python `version` (e.g. "3.10"): $TINYBERT_PYTHON<digits>, then pyenv's newest patch release, then PATH."""
    candidates = [os.environ.get("TINYBERT_PYTHON" + version.replace(".", ""), "")]
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python"),
                         key=lambda p: [int(x) for x in Path(p).parents[1].name.split(".") if x.isdigit()], reverse=True)
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        candidates.append(getattr(sys, "_base_executable", sys.executable))
    candidates.append(shutil.which(f"python{version}") or "")
    return next((c for c in candidates if c and _version_of(c) == version), None)


def identify(command: str | list[str], timeout: float = 300, extra_env: dict | None = None) -> dict:
    """{"module", "version", "numpy", "python", "machine"} of the interpreter a worker finds with `command` (a Python, or
    the argv that starts one)."""
    argv = [command] if isinstance(command, str) else list(command)
    done = subprocess.run([*argv, "-m", WORKER_MODULE, "--identify"], capture_output=True, text=True, env=worker_env(extra_env),
                          timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(tail)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _install_emulated(runtime: Runtime, root: Path | None) -> str:
    """QEMU, the aarch64 userland (shared) and this release's aarch64 wheels (one site per release)."""
    env = runtime.env_dir(root)
    env.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log = env.with_name(env.name + ".log")
    with open(log, "a", encoding="utf-8") as handle:
        try:
            emulation = arm64.install_emulation(env, handle)
            if not is_installed(runtime, root):
                arm64.install_wheels(runtime.site_dir(root), runtime.requirements, handle)
        except arm64.NotAvailable as error:
            raise RuntimeError(str(error)) from None
    found = identify(runtime.command(root=root), extra_env=runtime.python_env(root))
    if (found["module"], found["version"]) != (runtime.module, runtime.version):
        raise RuntimeError(f"{runtime.site_dir(root)} runs {found['module']} {found['version']}, not {runtime.label}; delete it and re-run")
    runtime.stamp_path(root).write_text(json.dumps(_stamp(runtime)), encoding="utf-8")
    qemus = ", ".join(f"QEMU {arm64.qemu_version(arm64.qemu_path(env, q))}" for q in runtime.qemus(root))
    return (f"installed {runtime.label} with numpy {found['numpy']} on Python {found['python']} {found.get('machine', '')} "
            f"under {qemus} (emulation {emulation}) in {time.perf_counter() - started:.0f} s")


def install(runtime: Runtime, root: Path | None = None) -> str:
    """Create or complete one side environment; returns a one-line status. Raises RuntimeError when it cannot."""
    env = runtime.env_dir(root)
    if env is None:
        found = identify(sys.executable)
        return f"{found['module']} {found['version']} in this environment"
    if is_installed(runtime, root):
        return "already installed"
    if runtime.emulated:
        return _install_emulated(runtime, root)
    started = time.perf_counter()
    base = find_python(runtime.python)
    if base is None:
        raise RuntimeError(f"no Python {runtime.python} found (pyenv install {runtime.python}, or set "
                           f"TINYBERT_PYTHON{runtime.python.replace('.', '')}=/path/to/python{runtime.python})")
    log = env.with_name(env.name + ".log")
    steps = [] if (env / "bin" / "python").is_file() else [("create the environment", [base, "-m", "venv", str(env)])]
    steps.append((f"pip install {' '.join(runtime.requirements)}",
                  [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *runtime.requirements]))
    with open(log, "w", encoding="utf-8") as handle:
        for what, command in steps:
            if subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"{what} failed (see {log})")
    found = identify(str(runtime.python_path(root)))
    if (found["module"], found["version"]) != (runtime.module, runtime.version):
        raise RuntimeError(f"{env} runs {found['module']} {found['version']}, not {runtime.module} {runtime.version}; delete it and re-run")
    runtime.stamp_path(root).write_text(json.dumps(_stamp(runtime)), encoding="utf-8")
    return f"installed {runtime.label} with numpy {found['numpy']} on Python {found['python']} in {time.perf_counter() - started:.0f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.verify.runtimes", description="The TFLite runtimes verify runs artifacts through.")
    parser.add_argument("action", choices=("install", "list"))
    parser.add_argument("--strict", action="store_true", default=os.environ.get("CI", "").lower() == "true",
                        help="fail when a runtime cannot be installed (default under CI=true)")
    args = parser.parse_args(argv)
    missing = []
    for runtime in RUNTIMES:
        if args.action == "list":
            print(f"{runtime.name:<30} {runtime.label:<36} {'installed' if is_installed(runtime) else 'not installed'}")
            continue
        try:
            print(f"runtime {runtime.name}: {install(runtime)}", flush=True)
        except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as error:
            missing.append(runtime.name)
            print(f"runtime {runtime.name}: not installed: {error}; verify marks it 'not installed'", flush=True)
    if missing and args.strict:
        print(f"error: runtimes {', '.join(missing)} could not be installed and CI needs all of them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
