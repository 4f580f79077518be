"""The one error type for bad input: its message is a single line that names the bad value."""


class ConfigError(ValueError):
    pass
