"""`lazy(name)`: a module imported when code first reads one of its attributes.

The registries (remedies, models, tasks, losses, metrics) name torch through it. A search's driver
checks every option against them before Ray starts, and needs torch for none of those checks;
importing torch there (2.3 s on the 2-core VM) held back Ray's start, and with it the trial
worker's own torch import, by that much (docs/performance.md). What runs a trial reads torch's
attributes and so imports it; `import torch` stays the way to write a module that always needs it.
"""
from __future__ import annotations

import functools
import importlib


class LazyModule:
    """Stands for the module `name` under some names of `namespace` (a module's globals) until code
    reads one of its attributes: then imports it and binds those names to the module itself, so
    that later reads cost what any global module's do (reads through this object, 1.5 us each on
    the 2-core VM, would otherwise add up in a trial's step loop)."""

    __slots__ = ("_name", "_module", "_namespace")

    def __init__(self, name: str, namespace: dict | None = None):
        self._name, self._module, self._namespace = name, None, namespace

    def __getattr__(self, attr: str):
        if attr in LazyModule.__slots__:  # unset while unpickling: never import for them
            raise AttributeError(attr)
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
            namespace = self._namespace or {}
            for key in [k for k, v in namespace.items() if v is self]:
                namespace[key] = module
        return getattr(module, attr)

    def __reduce__(self):  # by name, like a module: a pickled function's globals stay small
        return LazyModule, (self._name,)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is None else ' (imported)'}>"


def lazy(name: str, namespace: dict) -> LazyModule:
    """`torch = lazy("torch", globals())`: `torch` is the module once code has read from it."""
    return LazyModule(name, namespace)


def inference_mode(fn):
    """`@torch.inference_mode()` for a module that names torch through `lazy`: torch is imported
    when `fn` is first called, not where it is defined."""
    @functools.wraps(fn)
    def without_grad(*args, **kwargs):
        with _torch.inference_mode():
            return fn(*args, **kwargs)

    return without_grad


_torch = lazy("torch", globals())
