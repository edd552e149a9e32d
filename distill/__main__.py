"""`python -m distill ...` (also under `accelerate launch -m distill ...`): `tinybert-mobile distill ...`."""
import sys


def main(argv: list[str] | None = None) -> int:
    from export.commands import main as kit_main

    return kit_main(["distill", *(sys.argv[1:] if argv is None else argv)], alias=(1, "python -m distill"))


if __name__ == "__main__":
    sys.exit(main())
