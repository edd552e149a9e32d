"""Stage the folder that buildozer (Android) or kivy-ios packs: main.py, the mobile_app package, the bundles.

`python -m mobile_app.package_app --bundles bundles --out build/android_app [--format tflite] [--precisions default]
[--route litert|p4a-tflite-2.8]`

Buildozer wants a main.py at the root of its source.dir, and the phone needs only the on-device code
(numpy + stdlib + Kivy) and the artifacts of one format. Each bundle is sliced to the chosen format and
precisions (`default`: the one artifact per task the app opens when none is picked, int8-words4 where the bundle
has it, else int8-dynamic): the manifest keeps only those artifacts and their hashes, so the app's sha256 checks still
pass and nothing unused (Core ML packages on Android, other precisions) bloats the package. Of a precision's .tflite
files, the one the route's interpreter opens is kept: the LiteRT route gets the fast LiteRT-profile file, the p4a
TFLite 2.8 recipe the compatible one.
Standard library only; the staged folder is written beside --out and swapped in whole.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mobile_app.runtime.bundle import MANIFEST_NAME, BundleError, artifacts, choose_artifact, default_artifact, find_bundles, load_manifest
from mobile_app.runtime.errors import UserError
from mobile_app.runtime.files import replace_dir
from mobile_app.runtime.litert_android import LITERT_ANDROID_RELEASE
from mobile_app.runtime.runtime_versions import litert_tflite_version, missing_runtime

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CHOICE = "default"  # --precisions default: per task, the artifact the app opens when none is picked
# The Android routes and the TFLite version of the interpreter each carries (mobile_app/PACKAGING.md).
ROUTES = {"litert": litert_tflite_version(LITERT_ANDROID_RELEASE), "p4a-tflite-2.8": "2.8.0"}
DEFAULT_ROUTE = "litert"
# Desktop-only helpers that the phone never runs.
LEFT_OUT = {"package_app.py", "__main__.py"}  # __main__ is the desktop kit's alias
MAIN_PY = '''"""Entry point that buildozer / kivy-ios run: the demo app on the bundles packed beside it."""
import argparse
import os
import sys

from mobile_app.command import add_app_arguments, check_app_args, start_app

args = add_app_arguments(argparse.ArgumentParser(prog="main.py")).parse_args(sys.argv[1:])
args.bundles = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundles")
check_app_args(args)
sys.exit(start_app(args))
'''


def _copy_package(source_dir: Path, package: Path) -> None:
    """The app's .py/.kv files and its subpackages (the runtime), less the desktop-only helpers."""
    package.mkdir()
    for source in sorted(source_dir.iterdir()):
        if source.is_dir() and (source / "__init__.py").is_file():
            _copy_package(source, package / source.name)
        elif source.suffix in (".py", ".kv") and source.name not in LEFT_OUT:
            shutil.copy2(source, package / source.name)


def route_files(entries: list[dict], route: str, precisions: list[str] | None) -> list[dict]:
    """The .tflite entries a route's interpreter opens (contract.py's rule): per precision asked (None: every one the
    bundle has; ["default"]: the one the app opens with none picked) the file for its TFLite version; a file that version
    cannot run is refused."""
    version = ROUTES[route]
    if precisions == [DEFAULT_CHOICE]:
        chosen = [choose_artifact(entries, version)]
    else:
        wanted = list(dict.fromkeys(e.get("precision") for e in entries)) if precisions is None else precisions
        chosen = [choose_artifact(entries, version, p) for p in wanted]
    keep = [entry for entry in chosen if entry is not None]
    for entry in keep:
        lacking = missing_runtime(entry, version)
        if lacking:
            raise BundleError(f"{entry['file']}: {lacking}, but the {route} route runs TFLite {version}; re-export the bundle with "
                              f"`python -m export tflite --min-runtime {'.'.join(version.split('.')[:2])} litert`")
    return keep


def slice_bundle(src: Path, dst: Path, fmt: str, precisions: list[str] | None, route: str = DEFAULT_ROUTE) -> dict:
    """Copy one verified bundle keeping only `fmt` artifacts (of `precisions`, if given; ["default"]: the one the app
    opens by default); a .tflite only in the file `route`'s interpreter opens; the sliced manifest."""
    manifest = load_manifest(src, verify_files=True)
    if fmt == "tflite":
        keep = route_files(artifacts(manifest, fmt), route, precisions)
    else:
        if precisions == [DEFAULT_CHOICE] and artifacts(manifest, fmt):
            precisions = [default_artifact(artifacts(manifest, fmt))["precision"]]
        keep = [a for a in artifacts(manifest, fmt) if precisions is None or a.get("precision") in precisions]
    if not keep:
        have = ", ".join(f"{a.get('format')} {a.get('precision')}" for a in manifest.get("artifacts", [])) or "none"
        raise BundleError(f"{src} has no {fmt} artifact{' of ' + '/'.join(precisions) if precisions else ''} (it has: {have}); "
                          f"export one or change --format/--precisions")
    names = {a["file"] for a in keep} | {manifest["tokenizer"]["vocab"]} | set(manifest.get("extra_files", []))
    dst.mkdir(parents=True)
    for name in sorted(names):
        source = src / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, dst / name)
    sliced = dict(manifest, artifacts=keep, files={n: h for n, h in manifest["files"].items() if n in names})
    (dst / MANIFEST_NAME).write_text(json.dumps(sliced, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sliced


def stage_app(bundles_dir: str | Path, out_dir: str | Path, fmt: str = "tflite", precisions: list[str] | None = None,
              route: str = DEFAULT_ROUTE) -> dict[str, int]:
    """Write out_dir = main.py + mobile_app/ + bundles/<name>/ (every bundle in bundles_dir); {name: bytes staged}."""
    bundles_dir, out_dir = Path(bundles_dir), Path(out_dir).resolve()
    found = [bundle.name for bundle in find_bundles(bundles_dir)]
    if not found:
        raise BundleError(f"no bundles in {bundles_dir} (no <name>/{MANIFEST_NAME}); build them with `make demo` or `python -m export`")
    with replace_dir(out_dir) as stage:
        _copy_package(PACKAGE_DIR, stage / "mobile_app")
        (stage / "main.py").write_text(MAIN_PY, encoding="utf-8")
        sizes = {}
        for task in found:
            slice_bundle(bundles_dir / task, stage / "bundles" / task, fmt, precisions, route)
            sizes[task] = sum(p.stat().st_size for p in (stage / "bundles" / task).rglob("*") if p.is_file())
    return sizes


def add_package_parser(subparsers) -> argparse.ArgumentParser:
    """Register `package` on the kit's command line (`python -m mobile_app.package_app` is its alias)."""
    parser = subparsers.add_parser("package", help="stage the app and its bundles for buildozer (Android) or kivy-ios",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=Path, default=Path("bundles"), help="folder of bundles, each packaged (default: bundles)")
    parser.add_argument("--out", type=Path, default=Path("build/android_app"), help="folder to stage (default: build/android_app, buildozer.spec's source.dir)")
    parser.add_argument("--format", choices=("tflite", "coreml"), default="tflite", help="artifacts to keep: tflite for Android, coreml for iOS")
    parser.add_argument("--precisions", nargs="+", metavar="P",
                        help="keep only these precisions (e.g. int8-dynamic), or 'default': per task the one the app opens by "
                             "default (int8-words4 where the bundle has it, else int8-dynamic)")
    parser.add_argument("--route", default=DEFAULT_ROUTE, metavar="ROUTE",
                        help="the Android interpreter the APK carries, whose TFLite picks each .tflite: litert (LiteRT Android "
                             f"{LITERT_ANDROID_RELEASE}, buildozer.spec's; the fast hybrid int8 file) or p4a-tflite-2.8 "
                             "(python-for-android's tflite-runtime recipe; the TFLite 2.8 file) (default: litert)")
    parser.set_defaults(func=package_command, check=check_package)
    return parser


def check_package(args: argparse.Namespace) -> None:
    if args.route not in ROUTES:
        raise UserError(f"unknown --route {args.route!r}; choose {' or '.join(ROUTES)} (the interpreter the APK carries)")


def package_command(args: argparse.Namespace) -> int:
    try:
        sizes = stage_app(args.bundles, args.out, args.format, args.precisions, args.route)
    except OSError as error:
        raise UserError(f"cannot stage {args.out} ({error.strerror or error}); pass a writable --out") from None
    print("| task | staged MB |\n|---|---:|")
    for task, size in sizes.items():
        print(f"| {task} | {size / 1e6:.1f} |")
    print(f"staged {args.out}: main.py, mobile_app/, bundles/ ({', '.join(sizes)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from export.commands import main as kit_main

    return kit_main(["package", *(sys.argv[1:] if argv is None else argv)], alias=(1, "python -m mobile_app.package_app"))


if __name__ == "__main__":
    sys.exit(main())
