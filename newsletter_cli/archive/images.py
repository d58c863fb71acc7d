"""Pictures on the coordinator's computer, next to the issue, published with the archive.

A picture ``images/hero.jpg`` beside ``issues/2026-12-x.md`` becomes
``<archive url>/images/hero-<first 12 hex of its SHA-256>.jpg``: the email (sent before or
after the archive is published) and the site use the same URL, and a changed picture gets a
new one, so no inbox shows a stale copy.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

IMAGES = "images"
LARGE_BYTES = 1024 * 1024  # clients load them slowly, and some not at all
WIDE_PX = 1200


def local_file(src: str, issue_dir: Path) -> Path | None:
    """The file a relative image path names, beside the issue; None for a URL or no such file."""
    src = unquote(src.strip())
    parts = urlsplit(src)
    if not src or parts.scheme or parts.netloc or src.startswith(("/", "#")) or "\\\\" in src:
        return None
    path = (issue_dir / parts.path).resolve()
    try:
        path.relative_to(issue_dir.resolve().parent)  # inside the newsletter folder, nowhere else
    except ValueError:
        return None
    return path if path.is_file() else None


def published_name(path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return f"{IMAGES}/{path.stem}-{digest}{path.suffix.lower()}"


class Publisher:
    """Maps an issue's local pictures to their archive URLs, and remembers which it mapped."""

    def __init__(self, issue_dir: Path, archive_url: str):
        self.issue_dir = issue_dir
        self.base = archive_url.rstrip("/")
        self.files: dict[str, Path] = {}  # published name -> the picture on disk

    def __call__(self, src: str) -> str | None:
        path = local_file(src, self.issue_dir)
        if path is None:
            return None
        name = published_name(path)
        self.files[name] = path
        return f"{self.base}/{name}"


def width_of(path: Path) -> int | None:
    """The picture's width in pixels, if Pillow can read it."""
    try:
        from PIL import Image

        with Image.open(path) as picture:
            return int(picture.width)
    except Exception:  # not a picture Pillow knows: the size check says nothing of it
        return None
