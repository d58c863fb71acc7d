"""Copy real newsletter issues from git snapshots into tests/corpus/, front matter replaced.

Each issue's body is kept byte for byte; only its front matter (YAML between `---` lines, or
Pelican's `Key: value` header) is replaced by ours (subject and date from theirs), as the
corpus test asks. The snapshots are the ones the workplace's `fetch` brings; run:

    python scripts/collect_corpus.py /work/.mirror > tests/corpus/PROVENANCE.md
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus"

SOURCES = {
    "twir": {
        "repo": "rust-lang/this-week-in-rust",
        "name": "This Week in Rust",
        "licence": "CC BY-SA (README: 'Content for this-week-in-rust.org. Made available under CC-BY-SA.')",
        "paths": [
            "content/2013-06-07-this-week-in-rust.markdown",
            "content/2015-02-09-this-week-in-rust.md",
            "content/2016-07-19-this-week-in-rust.md",
            "content/2017-11-21-this-week-in-rust.md",
            "content/2019-03-26-this-week-in-rust.md",
            "content/2020-07-28-this-week-in-rust.md",
            "content/2021-12-01-this-week-in-rust.md",
            "content/2023-04-05-this-week-in-rust.md",
            "content/2024-08-07-this-week-in-rust.md",
            "content/2024-11-20-this-week-in-rust.md",
            "content/2025-12-10-this-week-in-rust.md",
            "content/2014-03-02-this-week-in-rust.markdown",
            "content/2016-12-13-this-week-in-rust.md",
            "content/2024-10-09-this-week-in-rust.md",
        ],
    },
    "haskellweekly": {
        "repo": "haskellweekly/haskellweekly",
        "name": "Haskell Weekly",
        "licence": "ISC (LICENSE.markdown, Copyright 2019 Taylor Fausak)",
        "paths": [
            "data/newsletter/2016/issue-35.markdown",
            "data/newsletter/2017/issue-64.markdown",
            "data/newsletter/2019/issue-163.markdown",
            "data/newsletter/2020/issue-218.markdown",
            "data/newsletter/2021/issue-249.markdown",
            "data/newsletter/2023/issue-357.markdown",
        ],
    },
    "nixosweekly": {
        "repo": "NixOS/nixos-weekly",
        "name": "NixOS Weekly",
        "licence": "CC BY-SA 4.0 (README, 'License', and COPYING)",
        "paths": [
            "content/2019/05-cachix-private-caches-termux-artwork-for-19-03-a-rant.md",
            "content/2019/11-nixery-nixfmt-and-cachix-releases-nixcon-2019-tickets-a-job-and-first-impressions-post.md",
            "content/2020/05-nixos-weekly-2020-05.md",
            "content/2020/08-nixos-weekly-2020-08.md",
            "content/2021/04-nixos-weekly-2021-04.md",
        ],
    },
    "ropensci": {
        "repo": "ropensci/roweb3",
        "name": "rOpenSci News Digest and blog",
        "licence": "CC BY 4.0 (themes/ropensci/layouts/partials/blogs/blog-single.html: 'content on this site is "
        "licensed under the CC-BY license', creativecommons.org/licenses/by/4.0)",
        "paths": [
            "content/blog/2021-06-21-ropensci-news-digest-june-2021/index.md",
            "content/blog/2022-10-21-ropensci-news-digest-october-2022/index.md",
            "content/blog/2023-06-22-ropensci-news-digest-june-2023/index.md",
            "content/blog/2024-11-29-news-november-2024/index.md",
            "content/blog/2025-07-23-news-july-2025/index.md",
            "content/blog/2026-06-30-news-june-2026/index.md",
            "content/blog/2020-06-18-news-jun2020/index.md",
            "content/blog/2020-04-07-bookdown-learnings/index.md",
            "content/blog/2019-04-18-ropensci-mee/index.md",
            "content/blog/2019-10-29-skimrv2/index.md",
            "content/blog/2020-02-03-av-audio/index.md",
            "content/blog/2021-02-03-targets/index.md",
            "content/blog/2020-03-04-commcall-mar2020/index.md",
        ],
    },
    "k8scontributors": {
        "repo": "kubernetes/contributor-site",
        "name": "Kubernetes Contributors blog",
        "licence": "Apache-2.0 (LICENSE)",
        "paths": [
            "content/en/blog/2022/community-meeting-february-2022.md",
            "content/en/blog/2022/2022-03-15-k8s-triage-bot-helper-ci-job/index.md",
            "content/en/blog/2023/sig-testing-spotlight.md",
            "content/en/blog/2025/wg-policy-spotlight-2025.md",
            "content/en/blog/2026/image-signature-routing.md",
            "content/en/blog/2021/improve-with-mermaid-diagrams/mermaid-diagrams.md",
            "content/en/blog/2023/2023-03-01-introducing-kwok/index.md",
            "content/en/blog/2021/peeyush-contributor-story.md",
            "content/en/blog/2024/sig-arch-enhancements-spotlight.md",
        ],
    },
}

PELICAN_KEY = re.compile(r"^[A-Z][\w ]*:")


def split_front_matter(text: str) -> tuple[dict[str, str], str]:
    """Their metadata (title and date only) and the body exactly as written."""
    meta: dict[str, str] = {}
    lines = text.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
        header, body = lines[1:end], lines[end + 1 :]
    elif lines and PELICAN_KEY.match(lines[0]):
        end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
        header, body = lines[:end], lines[end + 1 :]
    else:
        header, body = [], lines
    if lines and lines[0].strip() == "---":
        data = yaml.safe_load("".join(header)) or {}
        meta = {key: str(data[key]).strip() for key in ("title", "date") if data.get(key)}
    for line in header if not meta else ():
        if match := re.match(r"^(title|date)\s*:\s*(.*?)\s*$", line, re.I):
            meta[match.group(1).lower()] = match.group(2).strip("'\"")
    return meta, "".join(body)


def main(mirrors: Path) -> None:
    print("# Corpus of real newsletter issues\n")
    print("Each file's body is the source file byte for byte; only the front matter was replaced by ours")
    print("(`subject` from their title, `date` from theirs). `scripts/collect_corpus.py` made them from")
    print("the snapshots named here.\n")
    for folder, source in SOURCES.items():
        repo = mirrors / source["repo"].replace("/", "+") / "repo"
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"## {folder}/: {source['name']}\n")
        print(f"- repository: https://github.com/{source['repo']} at commit `{commit}`")
        print(f"- licence: {source['licence']}")
        print("- files:")
        (CORPUS / folder).mkdir(parents=True, exist_ok=True)
        for path in source["paths"]:
            text = subprocess.run(
                ["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True, check=True
            ).stdout.decode("utf-8")
            meta, body = split_front_matter(text)
            stem = Path(path).parent.name if Path(path).stem == "index" else Path(path).stem
            title = meta.get("title") or f"{source['name']} {stem.rsplit('-', 1)[-1]}"
            front = f"---\nsubject: {json.dumps(title, ensure_ascii=False)}\n"
            if meta.get("date"):
                front += f"date: {meta['date'][:10]}\n"
            (CORPUS / folder / f"{stem}.md").write_text(front + "---\n" + body, encoding="utf-8")
            print(f"  - `{folder}/{stem}.md` from `{path}`")
        print()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
