"""Plug-ins: study tasks (and the datasets and models they bring) found through the package entry
point group `imbalance_tune.tasks` (pyproject.toml), imported on first need. Generic modules never
import a study; they call `load()` when a name they do not know may belong to one."""
from __future__ import annotations

from importlib import metadata

GROUP = "imbalance_tune.tasks"
_loaded = False


def load() -> None:
    """Import every installed task plug-in once (each registers itself on import)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group=GROUP):
        ep.load()
