"""The one error type of the web app's plain functions: an HTTP status (4xx; 507 for a full disk) and a message for
people."""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses; ``filename`` names the uploaded file at fault, when one is."""

    def __init__(self, status: int, message: str, filename: str | None = None) -> None:
        super().__init__(f"{filename}: {message}" if filename else message)
        self.status, self.message, self.filename = status, message, filename

    def to_json(self) -> dict:
        return {"error": self.message} | ({"file": self.filename} if self.filename else {})
