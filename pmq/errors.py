"""User-facing errors: the CLI prints their one-line message and exits with code 2.

Library code speaks its own terms; ``param`` names the argument at fault (e.g. ``out_dir``) so
the CLI can name the flag a user typed (``--out``) without the library knowing about flags.
"""

from __future__ import annotations


class PMQError(ValueError):
    """Bad input the user can fix; the message says what is wrong and how to fix it."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
