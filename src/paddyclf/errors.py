"""User-facing errors: one clear paragraph and exit code 2, never a traceback wall."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user (files, flags, data). The CLI prints the message and exits with 2."""

    exit_code = 2


class TrainingInterruptedError(Exception):
    """SIGINT/SIGTERM stopped a run after saving its state; exit code 128 + signal (130, 143)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
