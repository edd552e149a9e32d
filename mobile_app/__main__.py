"""`python -m mobile_app --bundles DIR ...`: `tinybert-mobile app ...`, the Kivy demo app."""
import sys


def main(argv: list[str] | None = None) -> int:
    from export.commands import main as kit_main

    return kit_main(["app", *(sys.argv[1:] if argv is None else argv)], alias=(1, "python -m mobile_app"))


if __name__ == "__main__":
    sys.exit(main())
