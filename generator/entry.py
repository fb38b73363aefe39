"""The `gen` process's entry point (the console script and `python -m generator`).

Kept apart from generator.cli, which imports click: the top-level help is printed from
its cache (generator/helpcache.py) before click is imported, so `gen --help` costs little
more than the interpreter's own start. Every other invocation goes to `generator.cli`.
"""

from __future__ import annotations

import sys
from typing import NoReturn


def main() -> NoReturn:
    argv = sys.argv[1:]
    if argv in ([], ["--help"], ["-h"]):  # helpcache.ARGVS, without importing it otherwise
        from generator import helpcache

        if helpcache.applies(argv):
            helpcache.run(argv)
    from generator.cli import main as cli_main

    cli_main()
