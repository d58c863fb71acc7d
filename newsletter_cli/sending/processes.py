"""The processes a send starts, on every platform.

Linux forks them (the rendered email and the list's layout are shared for free); Windows and
macOS, where fork is missing or unsafe, spawn them. Whatever a process needs is therefore passed
to it as a small picklable value, never read from the parent's memory, so both ways behave the
same (the test suite runs the send tests both ways: see tests/portable/).
"""

from __future__ import annotations

import gc
import multiprocessing
import signal
import sys
from collections.abc import Callable
from typing import Any

from newsletter_cli.errors import NewsletterError


def start_method() -> str:
    """fork on Linux where it is available; spawn elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            multiprocessing.get_context("fork")
            return "fork"
        except ValueError:
            pass
    return "spawn"


def context() -> Any:
    return multiprocessing.get_context(start_method())


def prelude() -> None:
    """What each process a send starts does first: leave Ctrl-C to the parent (which stops the
    send in order), and freeze what it inherited, which the collector need not walk again."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    gc.freeze()


class Child:
    """Runs ``target(*args)`` (a module-level function and picklable arguments) in another
    process while this one goes on; ``result()`` returns its value or raises its
    NewsletterError here."""

    def __init__(self, target: Callable[..., Any], *args: Any):
        self.target = target
        self.args = args
        self._answer: tuple[str, Any] | None = None

    def __enter__(self) -> Child:
        ctx = context()
        self._receive, send = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_run_child, args=(send, self.target, self.args), daemon=True)
        self.process.start()
        send.close()
        return self

    def ready(self) -> bool:
        """Whether the child has answered, or died (without waiting)."""
        return self._answer is not None or self._receive.poll()

    def result(self) -> Any:
        if self._answer is None:
            try:
                self._answer = self._receive.recv()
            except EOFError:
                self.process.join(timeout=1)
                code = self.process.exitcode
                raise RuntimeError(f"the render process exited unexpectedly (exit code {code})") from None
        kind, value = self._answer
        if kind == "error":
            raise value
        if kind == "crashed":
            raise RuntimeError(f"rendering failed: {value}")
        return value

    def __exit__(self, *exc: object) -> None:
        self._receive.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def _run_child(send: Any, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    prelude()
    try:
        send.send(("ok", target(*args)))
    except NewsletterError as exc:
        send.send(("error", exc))
    except Exception as exc:  # a bug: raised again in the parent, not hidden
        send.send(("crashed", repr(exc)))
