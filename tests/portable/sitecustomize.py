"""Makes this Python look like Windows' to newsletter: no fcntl, no os.fork, and no "fork" start
method (so a send starts its processes with spawn, as on Windows and macOS).

Put this folder first on PYTHONPATH (``NEWSLETTER_PORTABLE=1 pytest`` does it, see conftest.py)
and every Python process started from there, spawned children included, imports it first.
"""

import importlib.abc
import multiprocessing
import multiprocessing.context
import os
import sys

HIDDEN = {"fcntl"}


class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in HIDDEN:
            raise ImportError(f"{name} is hidden: newsletter must run where it does not exist")
        return None


sys.meta_path.insert(0, _Hide())
for name in HIDDEN:
    sys.modules.pop(name, None)
if hasattr(os, "fork"):
    del os.fork

# as on Windows: "fork" is no start method at all, and spawn is the default
_contexts = multiprocessing.context._concrete_contexts
for _method in ("fork", "forkserver"):
    _contexts.pop(_method, None)
multiprocessing.context._default_context._default_context = _contexts["spawn"]
