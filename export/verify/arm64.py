"""ARM64 interpreters on an x86-64 machine: QEMU user mode, an aarch64 CPython userland and aarch64 wheels.

Phones run ARM64 kernels (XNNPACK and ruy take NEON, dot-product or i8mm code paths there), so verify's matrix
runs the aarch64 builds of the interpreters too, on named CPU models, under `qemu-aarch64 -cpu MODEL`. Nothing
emulated runs during the install:
  - QEMU: Debian's `qemu-user` 10 (bookworm-backports, static) and `qemu-user-static` 7.2 (bookworm), fetched with a
    private apt configuration (its own sources, lists and cache; the system's apt sources stay untouched) and unpacked
    with `dpkg -x`. 10 is preferred; 7.2 re-runs a row that fails on 10, so an emulator defect is not called a kernel
    failure. 7.2 shows the host's x86 /proc/cpuinfo, on which LiteRT's CPU detection crashes: its rows run with a
    prefix folder (`-L`) that holds an ARM /proc/cpuinfo whose CPU part matches the model.
  - the userland: `mmdebstrap --variant=extract --arch=arm64` of Debian's python3.11 packages (mmdebstrap itself
    unpacked the same way when the machine lacks it);
  - the wheels: `pip install --platform manylinux_..._aarch64 --target SITE`, run by this x86 Python.
All of it lives in one folder (export/verify/runtimes.py names it). Standard library only.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
USERLAND_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1", "zlib1g", "libexpat1", "libffi8",
                     "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0")
PYTHON_IN_USERLAND = "usr/bin/python3.11"
# (folder, Debian package/suite, the binary inside), preferred first.
QEMU_BUILDS = (("qemu10", "qemu-user/bookworm-backports", "usr/bin/qemu-aarch64"),
               ("qemu7", "qemu-user-static", "usr/bin/qemu-aarch64-static"))
# What pip may take for an aarch64 CPython 3.11 on glibc 2.36 (bookworm); ai-edge-litert 2.x is tagged 2_27 and
# tflite-runtime 2.14 2_34.
WHEEL_PLATFORMS = ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64",
                   "manylinux2014_aarch64")
# The MIDR part numbers of the CPU models the matrix names (Arm's technical reference manuals), with the features
# Linux lists for them: the ARM /proc/cpuinfo of a QEMU 7.2 row. A dot-product core claimed on an ARMv8.0 model makes
# the int8 kernels die with SIGILL, so each model gets its own.
CPU_PARTS = {"cortex-a53": ("0xd03", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
             "cortex-a55": ("0xd05", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
             "cortex-a76": ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"),
             "cortex-a710": ("0xd47", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc "
                                      "dcpop sha3 sm3 sm4 asimddp sha512 asimdfhm dit uscat ilrcpc flagm ssbs sb dcpodp flagm2 frint "
                                      "i8mm bf16")}
STAMP_NAME = ".tinybert-emulation.json"


class NotAvailable(RuntimeError):
    """This machine cannot set up the emulation (no apt/dpkg, no network to the Debian mirror, ...)."""


def debian_mirror() -> str:
    """The Debian mirror in this machine's own apt sources (deb822 or one-line), else deb.debian.org."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2:
                uri = next((w for w in words[1:] if "://" in w), "")
                if uri and "security" not in uri:
                    return uri
    return DEFAULT_MIRROR


def _run(command: list[str], log, what: str, cwd: Path | None = None, env: dict | None = None) -> None:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    try:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    except OSError as error:
        raise NotAvailable(f"{what} failed ({error.strerror})") from None
    if done.returncode != 0:
        raise NotAvailable(f"{what} failed (see {log.name})")


def _apt_options(apt_dir: Path) -> list[str]:
    return ["-o", f"Dir::Etc::SourceList={apt_dir / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={apt_dir / 'lists'}", "-o", f"Dir::Cache={apt_dir / 'cache'}",
            "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=" + ("root" if os.geteuid() == 0 else os.environ.get("USER", "nobody"))]


def _download(home: Path, packages: list[str], log) -> list[Path]:
    """The .deb files of `packages` (name or name/suite), fetched with a private apt configuration."""
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        raise NotAvailable("this machine has no apt-get/dpkg (Debian's tools), which the ARM64 emulation is installed with")
    apt_dir, debs = home / "apt", home / "debs"
    for folder in (apt_dir / "lists" / "partial", apt_dir / "cache" / "archives" / "partial", debs):
        folder.mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    (apt_dir / "sources.list").write_text(f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-backports main\n", encoding="utf-8")
    options = _apt_options(apt_dir)
    _run(["apt-get", *options, "update"], log, f"apt-get update from {mirror}")
    for old in debs.glob("*.deb"):
        old.unlink()
    _run(["apt-get", *options, "download", *packages], log, f"apt-get download {' '.join(packages)}", cwd=debs)
    found = []
    for package in packages:
        name = package.split("/")[0]
        matches = sorted(debs.glob(f"{name}_*.deb"))
        if not matches:
            raise NotAvailable(f"apt-get download gave no {name} package (see {log.name})")
        found.append(matches[-1])
    return found


def qemu_path(home: Path, folder: str) -> Path:
    binary = next(b for f, _, b in QEMU_BUILDS if f == folder)
    return home / folder / binary


def installed_qemus(home: Path) -> list[tuple[str, Path]]:
    """(folder, binary) of the QEMU builds installed in `home`, preferred first."""
    return [(folder, qemu_path(home, folder)) for folder, _, _ in QEMU_BUILDS if qemu_path(home, folder).is_file()]


def qemu_version(binary: Path) -> str:
    """'10.0.2' from `qemu-aarch64 --version`."""
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    first = (done.stdout.splitlines() or [""])[0]
    return first.split("version ")[-1].split()[0] if "version " in first else "unknown"


def userland(home: Path) -> Path:
    return home / "root"


def prefix_for(home: Path, cpu: str) -> Path:
    """The `-L` folder of a QEMU 7.2 row: the userland's top folders as links, and an ARM /proc/cpuinfo for `cpu`."""
    return home / f"prefix-{cpu}"


def _cpuinfo(cpu: str) -> str:
    part, features = CPU_PARTS[cpu]
    return (f"processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
            f"CPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 0\n\n")


def _make_prefixes(home: Path) -> None:
    root = userland(home)
    for cpu in CPU_PARTS:
        prefix = prefix_for(home, cpu)
        shutil.rmtree(prefix, ignore_errors=True)
        (prefix / "proc").mkdir(parents=True)
        for top in root.iterdir():
            if top.name != "proc":
                (prefix / top.name).symlink_to(top.resolve() if top.is_symlink() else top)
        (prefix / "proc" / "cpuinfo").write_text(_cpuinfo(cpu), encoding="utf-8")


def install_emulation(home: Path, log) -> str:
    """QEMU 10 and 7.2, the aarch64 userland and the 7.2 prefixes in `home`; idempotent (a stamp of what it holds)."""
    stamp = home / STAMP_NAME
    wanted = {"qemu": [b[1] for b in QEMU_BUILDS], "userland": list(USERLAND_PACKAGES), "suite": SUITE, "cpus": sorted(CPU_PARTS)}
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) == wanted and (userland(home) / PYTHON_IN_USERLAND).is_file():
            return "already installed"
    except (OSError, ValueError):
        pass
    home.mkdir(parents=True, exist_ok=True)
    tools = ["mmdebstrap"] if shutil.which("mmdebstrap") is None else []
    debs = _download(home, [b[1] for b in QEMU_BUILDS] + tools, log)
    for (folder, _, binary), deb in zip(QEMU_BUILDS, debs):  # keep the aarch64 binary of each package's many
        shutil.rmtree(home / folder, ignore_errors=True)
        unpacked = home / f"{folder}.unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)
        _run(["dpkg", "-x", str(deb), str(unpacked)], log, f"dpkg -x {deb.name}")
        (home / folder / binary).parent.mkdir(parents=True)
        os.replace(unpacked / binary, home / folder / binary)
        shutil.rmtree(unpacked)
    mmdebstrap = shutil.which("mmdebstrap")
    if tools:
        _run(["dpkg", "-x", str(debs[-1]), str(home / "mmdebstrap")], log, f"dpkg -x {debs[-1].name}")
        mmdebstrap = str(home / "mmdebstrap" / "usr" / "bin" / "mmdebstrap")
    root = userland(home)
    shutil.rmtree(root, ignore_errors=True)
    _run(["perl", mmdebstrap, "--variant=extract", "--arch=arm64", "--include=" + ",".join(USERLAND_PACKAGES), SUITE, str(root),
          debian_mirror()], log, "mmdebstrap of the aarch64 Python userland")
    if not (root / PYTHON_IN_USERLAND).is_file():
        raise NotAvailable(f"the aarch64 userland has no {PYTHON_IN_USERLAND} (see {log.name})")
    _make_prefixes(home)
    for used in ("debs", "apt", "mmdebstrap"):
        shutil.rmtree(home / used, ignore_errors=True)
    stamp.write_text(json.dumps(wanted), encoding="utf-8")
    return "installed"


def install_wheels(site: Path, requirements: tuple[str, ...], log) -> None:
    """aarch64 wheels of `requirements` for CPython 3.11 into `site`, by this (x86) Python's pip."""
    import sys

    shutil.rmtree(site, ignore_errors=True)
    platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts", "--only-binary=:all:",
          "--python-version", "3.11", "--implementation", "cp", *platforms, "--target", str(site), *requirements],
         log, f"pip install (aarch64) {' '.join(requirements)}")


def command(home: Path, qemu_folder: str, cpu: str) -> list[str]:
    """The argv prefix that runs the aarch64 Python under one QEMU build and CPU model."""
    prefix = prefix_for(home, cpu) if qemu_folder == "qemu7" else userland(home)
    return [str(qemu_path(home, qemu_folder)), "-cpu", cpu, "-L", str(prefix), str(userland(home) / PYTHON_IN_USERLAND)]
