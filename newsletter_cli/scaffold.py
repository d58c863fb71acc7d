"""`newsletter init`: a new newsletter folder that works right away, outside this repository."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from newsletter_cli.config import CONFIG_NAME
from newsletter_cli.errors import NewsletterError
from newsletter_cli.issue import new_issue
from newsletter_cli.render import PACKAGED_TEMPLATES

SCAFFOLD = Path(__file__).parent / "scaffold"


def init(folder: Path, today: dt.date) -> list[Path]:
    """Create newsletter.toml, templates/, issues/ and an example list; never overwrite."""
    if (folder / CONFIG_NAME).exists():
        raise NewsletterError(f"{CONFIG_NAME} already exists; nothing was changed", folder / CONFIG_NAME)
    folder.mkdir(parents=True, exist_ok=True)
    created = []
    for source in sorted(SCAFFOLD.iterdir()):
        target = folder / source.name
        if not target.exists():
            shutil.copyfile(source, target)
            created.append(target)
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    for source in sorted(PACKAGED_TEMPLATES.glob("*.j2")):
        if not (templates / source.name).exists():
            shutil.copyfile(source, templates / source.name)
            created.append(templates / source.name)
    created.append(new_issue(folder / "issues", "Welcome to our newsletter", today))
    return created
