"""Every benchmark script still starts: its imports resolve and its flags parse (they are not run by the suite, so a
refactor could otherwise break one unseen)."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

SCRIPTS = sorted(p for p in (REPO_ROOT / "benchmarks").glob("*.py") if p.name not in ("machine.py", "onnx_peer.py"))

PROBE = """
import contextlib, io, runpy, sys
failures = []
for path in sys.argv[1:]:
    sys.argv = [path, "--help"]
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(path, run_name="__main__")
    except SystemExit as stop:
        if stop.code not in (0, None) or "usage:" not in out.getvalue():
            failures.append(f"{path}: exit {stop.code}")
    except Exception as error:
        failures.append(f"{path}: {type(error).__name__}: {error}")
    else:
        failures.append(f"{path}: --help did not exit")
print("\\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_every_benchmark_script_imports_and_parses_help():
    assert len(SCRIPTS) >= 7
    proc = subprocess.run([sys.executable, "-c", PROBE, *map(str, SCRIPTS)], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=600, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_machine_line_names_the_cpu_and_torchs_kernels():
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.machine import cpu_model, machine_line

    line = machine_line()
    assert cpu_model() in line and "kernels" in line and "GFLOP/s" in line
