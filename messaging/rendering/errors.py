"""The one error rendering raises, whatever went wrong with which field."""

from __future__ import annotations


class RenderError(Exception):
    """A message's template cannot be used: it is invalid, fails, or exceeds a limit.

    ``field`` names the template field ("subject", "html", "body", ...; "channel" or
    "variants" when the message as a whole is wrong), ``message`` says what is wrong in
    words an author can act on and starts with ``line N:`` when Jinja knows the line,
    which is also in ``line``.
    """

    def __init__(self, field: str, message: str, *, line: int | None = None) -> None:
        self.field = field
        self.line = line
        self.message = f"line {line}: {message}" if line is not None else message
        super().__init__(f"{field}: {self.message}")
