"""User-facing errors: the CLI prints these as one line instead of a traceback."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def spell(text: str, names: Mapping[str, str]) -> str:
    """``text`` with each parameter named in backticks spelled as ``names`` says (others unchanged)."""
    return _PARAMETER.sub(lambda m: names.get(m.group(1), m.group(0)), text)


class RtfuseError(Exception):
    """An error caused by input, configuration or environment, explained in one line."""


class ParameterError(RtfuseError):
    """A parameter value that cannot work, or parameters that exclude each other.

    The message names parameters in backticks (``"`resize` and `calib` exclude each other"``) so
    that each front end spells them its own way: ``str()`` keeps the library's names, the command
    line shows its options through :meth:`spelled`. Library code never names a flag.
    """

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(_PARAMETER.findall(str(self)))

    def spelled(self, names: Mapping[str, str]) -> str:
        """The message with each named parameter spelled as ``names`` says (others keep their backticks)."""
        return spell(str(self), names)
