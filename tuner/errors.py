"""Bad input and warnings, as the command line shows them.

`ConfigError`: the one error type for bad input; its message is a single line that names the bad
value. `one_line_warnings`: a command's warnings (data fallback, a skipped result file) print as
"warning: ..." on one line, without the file name and source line Python adds for developers.
"""
import warnings


class ConfigError(ValueError):
    pass


def one_line_warnings() -> None:
    """For `python -m ...` entry points only: library users keep Python's own warning format."""
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: f"warning: {message}\n"
