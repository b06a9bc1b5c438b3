"""User-facing errors: one clear paragraph and exit code 2, never a traceback wall."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (files, flags, data). The CLI prints the message and exits with 2."""

    exit_code = 2
