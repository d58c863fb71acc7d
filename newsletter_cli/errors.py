"""One family of errors, independent of any interface: the CLI prints ``Error: <message>`` and
exits 1 (no traceback), the web apps show it in a page, `check` reports it as a finding."""

from __future__ import annotations

from pathlib import Path


class NewsletterError(Exception):
    """Any failure the user can fix; ``message`` is one line naming the file and line."""

    def __init__(self, message: str, path: Path | str | None = None, line: int | None = None, code: str | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        self.detail = message
        self.code = code  # for `newsletter check`, which reports it as a finding
        self.message = located(message, path, line)
        super().__init__(self.message)


def located(message: str, path: Path | str | None, line: int | None) -> str:
    """Prefix a message with ``file:line:`` the way compilers and linters do."""
    if path is None:
        return message
    shown = display_path(path) if isinstance(path, Path) else path
    where = f"{shown}:{line}" if line else shown
    return f"{where}: {message}"


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


class ConfigError(NewsletterError):
    """newsletter.toml is missing, unreadable or invalid."""


class IssueError(NewsletterError):
    """An issue file's front matter or body cannot be read."""


class RenderError(NewsletterError):
    """The issue could not be turned into an email (template, merge field, MJML)."""


class SubscriberError(NewsletterError):
    """The subscriber list cannot be read."""
