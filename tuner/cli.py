"""`imbalance-tune`: the console script (pyproject `[project.scripts]`).

    imbalance-tune EXPERIMENT [options]        the search, as `python -m tuner.search`
    imbalance-tune --resume RUN_DIR            continue a run with the options it recorded
    imbalance-tune report RUN_DIR [options]    as `python -m analysis.report`
    imbalance-tune export RUN_DIR [options]    as `python -m analysis.export` (default --out: RUN_DIR)
"""
from __future__ import annotations

import sys

PROG = "imbalance-tune"
SUBCOMMANDS = ("report", "export")


def main(argv=None) -> int:
    """`argv` None: this process's own command line (the console script), which a search ends
    itself (`tuner.search.exit_without_teardown`); with `argv`, a call that returns its exit code."""
    from tuner.errors import one_line_warnings

    own_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    one_line_warnings()
    if argv and argv[0] == "report":
        from analysis import report

        return report.main(argv[1:], prog=f"{PROG} report")
    if argv and argv[0] == "export":
        from analysis import export

        return export.main(argv[1:], prog=f"{PROG} export")
    from tuner import search

    if own_command_line:  # as `python -m tuner.search` ends: without the interpreter's teardown
        search.exit_without_teardown(search.run_cli, argv, PROG)
    return search.run_cli(argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
