"""`python -m export ...`: the converters' commands, `verify` and `pipeline` from the floors above."""
import sys

from export import cli
from export.pipeline.cli import add_pipeline_parser
from export.verify.cli import add_verify_parser


def main(argv=None) -> int:
    return cli.main(argv, extra=[add_verify_parser, add_pipeline_parser])


if __name__ == "__main__":
    sys.exit(main())
