"""User-facing errors: the CLI prints these as one line instead of a traceback."""


class RtfuseError(Exception):
    """An error caused by input, configuration or environment, explained in one line."""
