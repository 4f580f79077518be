"""Memory of a process tree (a search driver and the Ray processes it starts), from /proc (Linux).

RSS summed over processes counts every shared page (libtorch, the object store's shared memory)
once per process that maps it; PSS (proportional set size, /proc/PID/smaps_rollup) splits each
shared page between the processes sharing it, so the PSS sum is the tree's real footprint.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree(root: int) -> list[int]:
    kids, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def rss_pss(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes, (0, 0) for a process that is gone or unreadable."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return rss, pss


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclass
class Peak:
    rss: int = 0  # peak over time of the summed RSS
    pss: int = 0  # peak over time of the summed PSS
    processes: int = 0  # processes in the tree at the PSS peak
    workers: int = 0  # Ray worker processes at the PSS peak (their names start with "ray::")
    samples: int = 0
    by_name: dict = field(default_factory=dict)  # PSS per process name at the PSS peak


class TreeMonitor:
    """Polls the tree of `root` every `interval` s in a thread; `.peak` holds the maxima."""

    def __init__(self, root: int, interval: float = 0.25):
        self.root, self.interval, self.peak = root, interval, Peak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            pids = tree(self.root)
            per = {pid: rss_pss(pid) for pid in pids}
            rss, pss = sum(r for r, _ in per.values()), sum(p for _, p in per.values())
            self.peak.samples += 1
            self.peak.rss = max(self.peak.rss, rss)
            if pss > self.peak.pss:
                names = {pid: _name(pid) for pid in pids}
                by_name: dict[str, int] = {}
                for pid, (_, p) in per.items():
                    by_name[names[pid]] = by_name.get(names[pid], 0) + p
                self.peak.pss, self.peak.processes, self.peak.by_name = pss, len(pids), by_name
                self.peak.workers = sum(1 for n in names.values() if n.startswith("ray::"))
            time.sleep(self.interval)
