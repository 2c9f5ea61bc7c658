"""User-facing errors: the CLI prints their one-line message and exits with code 2."""

from __future__ import annotations


class PMQError(ValueError):
    """Bad input the user can fix; the message says what is wrong and how to fix it."""
