"""The one exception of the inference package: an input (file, option) is unusable.

``InputError(message)``: the message names the file (or option) and what is wrong; command lines
print it as one line and exit with status 2.
"""
from __future__ import annotations

__all__ = ["InputError"]


class InputError(RuntimeError):
    """A user input is unusable; the message names the file and the problem."""
