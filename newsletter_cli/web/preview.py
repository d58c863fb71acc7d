"""`newsletter preview`'s site: the email as each sample subscriber gets it, at desktop and phone
width, light and dark, its plain text, and what `check` finds; rebuilt on every save."""

from __future__ import annotations

import json
import re
from pathlib import Path

from markupsafe import Markup

from newsletter_cli import check, subscribers, unsubscribe
from newsletter_cli.build import sample_rows
from newsletter_cli.config import load_config
from newsletter_cli.issue import load_issue
from newsletter_cli.render import GMAIL_CLIP_BYTES, render
from newsletter_cli.web import page_template
from newsletter_cli.web.livereload import LiveSite, new_token

PAGE = page_template("preview.html.j2")


def preview_site(
    config_path: Path | None,
    issue_path: Path,
    list_path: Path | None = None,
    as_email: str | None = None,
    can_send_test: bool = False,
    post_token: str = "",
) -> dict[str, tuple[str, bytes]]:
    """Everything `newsletter preview` serves, rebuilt from the files on every save."""
    config = load_config(config_path)
    issue = load_issue(issue_path)
    rows = sample_rows(config, list_path, as_email)
    rendered = render(issue, config, subscribers.columns_if_listed(list_path or config.subscribers_path))
    html_type, text_type = "text/html; charset=utf-8", "text/plain; charset=utf-8"
    site: dict[str, tuple[str, bytes]] = {}
    samples = []
    for index, row in enumerate(rows):
        message = rendered.personalize({**row, "unsubscribe_url": unsubscribe.sample_link(config)})
        body = message.html.encode()
        site[f"/email/{index}.html"] = (html_type, body)
        site[f"/email/{index}.dark.html"] = (html_type, dark_variant(message.html).encode())
        site[f"/email/{index}.txt"] = (text_type, message.text.encode())
        name = " ".join(filter(None, (row.get("first_name"), row.get("last_name")))) or row.get("name", "")
        samples.append(
            {
                "label": f"{name} <{row['email']}>" if name else row["email"],
                "from": config.from_name,
                "subject": message.subject,
                "preheader": message.preheader,
                "bytes": len(body),
            }
        )
    site["/email.html"] = site["/email/0.html"]
    site["/email.txt"] = site["/email/0.txt"]
    # every check but the one that reads each row of the list: a save must show in well under a second
    findings, notes = check.findings(issue, rendered, config, list_path, read_list=False)
    page = PAGE.render(
        findings=findings,
        notes=notes,
        samples=samples,
        samples_json=Markup(json.dumps(samples).replace("</", "<\\/")),
        clip_bytes=GMAIL_CLIP_BYTES,
        can_send_test=can_send_test,
        post_token=post_token,
    )
    site["/"] = (html_type, page.encode())
    return site


def dark_variant(html: str) -> str:
    """The email as a dark-mode client shows it: its prefers-color-scheme: dark rules always on."""
    return re.sub(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", "all", html)


def live_preview(
    config_path: Path | None, issue_path: Path, list_path: Path | None = None, as_email: str | None = None
) -> LiveSite:
    """`newsletter preview`'s site: rebuilt on every save, with a button that sends one [TEST]
    copy (the form's ``to``, filled for sample ``sample``)."""
    from newsletter_cli.sending.test_copy import send_test

    def send_test_action(form: dict[str, str]) -> tuple[int, str]:
        try:
            sample = int(form.get("sample", "0") or 0)
        except ValueError:
            return 400, "sample must be a whole number"
        address = send_test(load_config(config_path), issue_path, form.get("to", ""), list_path, as_email, sample)
        return 200, f"Sent a [TEST] copy to {address}."

    token = new_token()
    return LiveSite(
        lambda: preview_site(config_path, issue_path, list_path, as_email, can_send_test=True, post_token=token),
        actions={"/send-test": send_test_action},
        token=token,
    )
