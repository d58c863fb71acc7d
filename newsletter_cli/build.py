"""`newsletter build`: render an issue, fill it for one sample subscriber, write html and text.

Both files are written to temporary names and renamed into place, so a failed build never
leaves a half-written or mismatched pair behind.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from newsletter_cli import subscribers, unsubscribe
from newsletter_cli.config import Config
from newsletter_cli.errors import NewsletterError, RenderError, SubscriberError, display_path
from newsletter_cli.issue import load_issue
from newsletter_cli.render import GMAIL_CLIP_BYTES, SAMPLE_EMAIL, WARN_BYTES, Message, MJMLError, Rendered, render


@dataclass(frozen=True)
class Build:
    rendered: Rendered
    message: Message
    html_path: Path
    text_path: Path

    @property
    def html_bytes(self) -> int:
        return len(self.message.html.encode("utf-8"))

    @property
    def size_warning(self) -> str | None:
        kb = self.html_bytes / 1024
        if self.html_bytes > GMAIL_CLIP_BYTES:
            return f"the html is {kb:.1f} KB, over Gmail's 102 KB limit: Gmail will clip it"
        if self.html_bytes > WARN_BYTES:
            return f"the html is {kb:.1f} KB, close to Gmail's 102 KB clipping limit"
        return None


def preview_message(
    issue_path: Path, config: Config, list_path: Path | None = None, as_email: str | None = None
) -> tuple[Rendered, Message]:
    """Render an issue and fill it for a sample subscriber, as build and preview show it."""
    issue = load_issue(issue_path)
    list_path = list_path or config.subscribers_path
    row = sample_rows(config, list_path, as_email, count=1)[0]
    rendered = render(issue, config, subscribers.columns_if_listed(list_path))
    message = rendered.personalize({**row, "unsubscribe_url": unsubscribe.sample_link(config)})
    return rendered, message


def sample_rows(config: Config, list_path: Path | None, as_email: str | None, count: int = 5) -> list[dict[str, str]]:
    """A few subscribers to preview with: --as first, then the list's first valid rows."""
    path = list_path or config.subscribers_path
    if not path.exists():
        if as_email:
            raise SubscriberError("subscriber list not found (needed by --as)", path)
        return [{"email": SAMPLE_EMAIL}]
    rows = [subscribers.sample_row(path, as_email)] if as_email else []
    for row in subscribers.scan(path):
        if len(rows) >= count:
            break
        if row.status == subscribers.VALID and all(row.key != r["email"].lower() for r in rows):
            rows.append(row.fields)
    return rows or [{"email": SAMPLE_EMAIL}]


def build(
    issue_path: Path,
    config: Config,
    out_dir: Path | None = None,
    list_path: Path | None = None,
    as_email: str | None = None,
    write_mjml: bool = False,
) -> Build:
    """``write_mjml``: also the MJML the email was made from, even when MJML refused it."""
    out_dir = out_dir or config.root / "build"
    try:
        rendered, message = preview_message(issue_path, config, list_path, as_email)
    except MJMLError as exc:
        if write_mjml:
            path = out_dir / f"{issue_path.stem}.mjml"
            write_files({path: exc.mjml})
            raise RenderError(f"{exc.detail}; the MJML is in {display_path(path)}", exc.path, exc.line) from None
        raise
    html_path = out_dir / f"{rendered.slug}.html"
    text_path = out_dir / f"{rendered.slug}.txt"
    files = {html_path: message.html, text_path: message.text}
    if write_mjml:
        files[out_dir / f"{rendered.slug}.mjml"] = rendered.mjml
    write_files(files)
    return Build(rendered, message, html_path, text_path)


def write_files(contents: dict[Path, str]) -> None:
    """Write every file or none: each goes to a temporary file first, then all are renamed."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in contents.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a build is for anyone to open (Windows: a no-op)
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        raise NewsletterError(f"cannot write: {exc.strerror}", exc.filename) from None
    finally:
        for tmp, _ in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)
