"""A finding of `newsletter check`: where, how bad, a stable code (the README lists them), and why."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    line: int
    level: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.level}: {self.message}"

    def sort_key(self) -> tuple[int, bool, str, str]:
        return (self.line, self.level != ERROR, self.code, self.message)

    def as_json(self) -> dict[str, object]:
        return {key: asdict(self)[key] for key in ("level", "code", "message", "file", "line")}


def findings_json(findings: Iterable[Finding]) -> list[dict[str, object]]:
    return [finding.as_json() for finding in findings]


def article(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"
