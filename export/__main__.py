"""`python -m export tflite|coreml|verify|pipeline ...`: the kit's commands (`tinybert-mobile export tflite ...`,
`tinybert-mobile verify ...`), the converters named without the `export` word."""
import sys

CONVERTERS = ("tflite", "coreml")


def main(argv: list[str] | None = None) -> int:
    from export.commands import main as kit_main

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] and argv[0] in CONVERTERS:
        return kit_main(["export", *argv], alias=(2, f"python -m export {argv[0]}"))
    command = argv[0] if argv[:1] and not argv[0].startswith("-") else None
    return kit_main(argv, alias=(1, f"python -m export {command}") if command else (0, "python -m export"))


if __name__ == "__main__":
    sys.exit(main())
