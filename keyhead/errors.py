"""The one exception type for problems a user can fix (bad files, bad configs, bad arguments)."""

from __future__ import annotations


class KeyheadError(Exception):
    """A problem with the user's input; the message says what is wrong, where, and how to fix it.

    The CLI prints it as one line and exits with status 2 (no traceback unless ``--debug``).
    """
