"""``mergan train | eval | classifier | sync | report``: the command line.

The composition root: it stands above the layers it composes (``mergan`` the trainer, ``tracking``,
``trainables``, ``analysis``) and imports each command's module explicitly.
"""

from __future__ import annotations

import argparse
import sys

from mergan.callbacks import DivergenceError
from mergan.settings import ConfigError
from mergan_cli import evaluate, report, reproduce, sync, train
from mergan_cli.train import EXIT_INTERRUPTED


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``mergan`` parser; ``argv`` lets ``mergan train`` see a ``--method-module`` before it builds its flags."""
    parser = argparse.ArgumentParser(prog="mergan", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for command in (evaluate, sync, report, reproduce):
        command.add_subcommands(commands)
    train.add_subcommands(commands, argv)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        parser = build_parser(argv)
    except ConfigError as error:  # a --method-module that cannot be loaded
        print(f"mergan: error: {error}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"mergan {args.command}: error: {error}", file=sys.stderr)
        return 2
    except DivergenceError as error:
        print(f"mergan {args.command}: {error}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:  # outside training (mergan train handles its own): nothing to continue
        print(f"\nmergan {args.command}: stopped by Ctrl-C", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
