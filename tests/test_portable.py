"""The package runs where the coordinator works: nothing POSIX-only on any command's import
path, and the send's processes work under spawn (Windows, macOS). `.ci/run` runs the send tests
a second time with NEWSLETTER_PORTABLE=1, which hides fcntl and os.fork (tests/portable/)."""

import ast
import importlib
import os
import subprocess
import sys

import pytest

from newsletter_cli.sending.processes import start_method

from .conftest import REPO

PORTABLE = bool(os.environ.get("NEWSLETTER_PORTABLE"))


def test_processes_are_spawned_where_fork_is_missing_and_forked_on_linux():
    if PORTABLE:  # the run that is Windows for newsletter: no fcntl, no fork, for its children too
        with pytest.raises(ImportError):
            importlib.import_module("fcntl")
        assert not hasattr(os, "fork")
        assert start_method() == "spawn"
        child = subprocess.run([sys.executable, "-c", "import os; print(hasattr(os, 'fork'))"], capture_output=True)
        assert child.stdout.strip() == b"False"
    elif sys.platform.startswith("linux"):
        assert start_method() == "fork"
    else:
        assert start_method() == "spawn"


POSIX_ONLY = {"fcntl", "termios", "tty", "pty", "pwd", "grp", "resource", "posix"}


def test_no_module_of_the_package_imports_a_posix_only_module():
    """Windows has none of them (the standard library's own optional imports of fcntl, in
    subprocess say, are guarded; the portable run proves the send works without it)."""
    found = []
    for path in sorted((REPO / "newsletter_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {name}" for name in names if name.split(".")[0] in POSIX_ONLY]
    assert found == []
