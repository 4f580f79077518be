"""Reads a Ray Tune run directory from its files alone: no Ray cluster, no unpickling.

Works on a run still in progress and on a directory copied from a cluster: each trial's
`params.json` and `result.json` are the source of truth; the newest `experiment_state-*.json`
(plain JSON) adds each trial's status and the trials that have not started yet. When the state
is missing or stale, the status is inferred from the trial's files. A damaged line of a
`result.json` is skipped with a warning naming the file; the other lines and trials are kept.
"""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

STATUSES = ("TERMINATED", "ERROR", "RUNNING", "PENDING", "PAUSED")
# Ray names trial dirs <trainable>_<trial id>_<n>_<params>_<date> (tuner.search: trial_<trial id>); the id
# is "<5 hex>_<5 digits>" for grid/random search and 8 hex digits for searchers such as Optuna.
_TRIAL_ID = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5}|[0-9a-f]{8})(?:_|$)")
_SEARCHERS = ("optuna", "hyperopt", "hebo", "bayesopt", "bayes_opt", "nevergrad", "zoopt", "ax", "bohb", "skopt")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FAILURE_HEADER = re.compile(r"^Failure # \d+")


@dataclass
class TrialFiles:
    """What one trial left on disk (or in the experiment state, for trials not started)."""

    trial_id: str
    logdir: str  # trial dir name relative to the run dir (may not exist yet for a pending trial)
    config: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)  # one per reported epoch, in order
    status: str = "PENDING"
    error: str | None = None  # first line of the exception message
    error_file: str | None = None
    index: int | None = None  # position in the order the trials were created (set by read_run)
    start_time: float | None = None  # when Ray started it (experiment state; sub-second, unlike result timestamps)

    def creation_key(self) -> tuple:
        """Sort key for creation order: Ray's counter in the dir name (`<trainable>_<id>_<n>_...`), else the
        id's numeric suffix (grid/random ids `4bde7_00004`), else when Ray started it. (The experiment state's
        trial list is not in creation order; result timestamps are whole seconds.)"""
        inf = float("inf")
        m = re.search(rf"_{re.escape(self.trial_id)}_(\d+)(?:_|$)", "_" + self.logdir)
        counter = int(m.group(1)) if m else inf
        m = re.search(r"_(\d+)$", self.trial_id)
        suffix = int(m.group(1)) if m else inf
        first = self.rows[0] if self.rows else {}
        start = self.start_time or (first.get("timestamp", inf) - (first.get("time_this_iter_s") or 0))
        return (counter, suffix, start, self.trial_id)


@dataclass
class RunFiles:
    name: str
    path: Path
    trials: list[TrialFiles]
    search_metric: str | None  # the metric Ray's TuneConfig used, from the experiment state
    searcher: str  # "optuna", "hyperopt", ... or "basic-variant" (grid/random search)
    search_mode: str | None  # "max"/"min" when the searcher state records it


# What the reader needs of a remote run (s3://, gs://, file://...): no checkpoints.
TRIAL_FILES = ("params.json", "result.json", "error.txt")
RUN_FILE = re.compile(r"^(experiment_state-.*\.json|searcher-state-.*\.pkl|optuna\.journal|search_options\.json)$")


def fetch_remote(uri: str, dest=None) -> Path:
    """Copy a remote run dir's small files (not its checkpoints) to a local folder through
    `pyarrow.fs` (S3, GCS, HDFS, file://: whatever `FileSystem.from_uri` knows); returns that folder.
    The reader then works on it as on a local run."""
    import tempfile

    import pyarrow.fs as pafs

    fs, base = pafs.FileSystem.from_uri(uri)
    base = base.rstrip("/")
    root = Path(dest or tempfile.mkdtemp(prefix="imbalance-tune-run-")) / base.rsplit("/", 1)[-1]
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise FileNotFoundError(f"{uri} does not exist") from None
    for info in infos:
        rel = info.path[len(base) + 1:].split("/")
        wanted = (len(rel) == 1 and RUN_FILE.match(rel[0])) or (len(rel) == 2 and rel[1] in TRIAL_FILES)
        if info.type == pafs.FileType.File and wanted:
            target = root.joinpath(*rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path) as f:
                target.write_bytes(f.read())
    return root


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (any(path.glob("experiment_state-*.json")) or any(_trial_dirs(path)))


def _trial_dirs(run: Path):
    return (d for d in sorted(run.iterdir()) if d.is_dir() and ((d / "result.json").exists() or (d / "params.json").exists()))


def read_run(path) -> RunFiles:
    run = Path(path).resolve()
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is not a directory")
    state = read_experiment_state(run)
    trials = []
    by_id = {e["trial_id"]: e for e in state["trials"].values() if e.get("trial_id")}
    for d in _trial_dirs(run):
        entry = state["trials"].get(d.name) or by_id.get(_id_from_dirname(d.name)) or {}
        trials.append(_read_trial(d, entry))
    seen = {t.trial_id for t in trials}
    # Trials the state knows but that have no directory yet: pending (or lost) trials.
    for logdir, entry in state["trials"].items():
        if entry.get("trial_id") and entry["trial_id"] not in seen:
            trials.append(TrialFiles(trial_id=entry["trial_id"], logdir=logdir, config=entry.get("config") or {},
                                     status=entry.get("status") or "PENDING", start_time=entry.get("start_time")))
    if not trials:
        raise FileNotFoundError(f"{run} holds no Ray Tune trials (no trial dir with params.json/result.json)")
    trials.sort(key=TrialFiles.creation_key)
    for i, t in enumerate(trials):
        t.index = i
    return RunFiles(run.name, run, trials, state["metric"], *_searcher(run))


def read_experiment_state(run: Path) -> dict:
    """{"metric": str|None, "trials": {relative_logdir: {trial_id, status, config}}} from the newest state file."""
    out = {"metric": None, "trials": {}}
    files = sorted(run.glob("experiment_state-*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    if not files:
        return out
    try:
        state = json.loads(files[-1].read_text())
    except (OSError, ValueError) as e:
        warnings.warn(f"{files[-1]}: unreadable experiment state ({e}); trial status inferred from trial files")
        return out
    out["metric"] = (state.get("runner_data") or {}).get("_metric")
    for item in state.get("trial_data") or []:
        try:
            # Each entry is [trial json, run-metadata json]; both are JSON text, the pickled parts are hex strings we ignore.
            trial, meta = (json.loads(x) if isinstance(x, str) else x for x in item[:2])
        except (ValueError, TypeError, IndexError):
            continue
        logdir = trial.get("relative_logdir") or trial.get("trial_id")
        out["trials"][logdir] = {"trial_id": trial.get("trial_id"), "status": trial.get("status"), "config": trial.get("config"),
                                 "start_time": (meta or {}).get("start_time")}
    return out


def _read_trial(d: Path, entry: dict) -> TrialFiles:
    rows = read_results(d / "result.json")
    # params.json has sorted keys; the config a result carries keeps the order the search wrote it in.
    config = (rows[0].get("config") if rows else None) or _read_json(d / "params.json") or entry.get("config") or {}
    trial_id = (rows[-1].get("trial_id") if rows else None) or entry.get("trial_id") or _id_from_dirname(d.name)
    t = TrialFiles(trial_id=str(trial_id), logdir=d.name, config=config, rows=rows, start_time=entry.get("start_time"))
    if (d / "error.txt").exists():
        t.error_file = f"{d.name}/error.txt"
        t.error = error_headline((d / "error.txt").read_text(errors="replace"))
    t.status = _status(t, entry.get("status"))
    return t


def _status(t: TrialFiles, recorded: str | None) -> str:
    last = t.rows[-1] if t.rows else {}
    finished = bool(last.get("done")) or (
        isinstance(last.get("epoch"), int) and isinstance(t.config.get("epochs"), int) and last["epoch"] >= t.config["epochs"]
    )
    if recorded in ("TERMINATED", "ERROR"):
        return recorded
    # The state can lag behind the files (saved every few seconds, or copied mid-run): trust the files.
    if t.error is not None:
        return "ERROR"
    if finished:
        return "TERMINATED"
    if recorded == "PENDING" and t.rows:
        return "RUNNING"
    if recorded in STATUSES:
        return recorded
    return "RUNNING" if t.rows else "PENDING"


def read_results(path: Path) -> list[dict]:
    """One dict per line of a result.json; damaged lines (a truncated last line, a corrupt copy) are skipped with a warning."""
    if not path.exists():
        return []
    rows, bad = [], []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                bad.append(n)
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append(n)
    if bad:
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s) (line {', '.join(map(str, bad[:5]))}); kept {len(rows)}")
    return rows


def error_headline(text: str) -> str:
    """The first line of the exception message in a Ray error.txt (after the last traceback frame)."""
    lines = [_ANSI.sub("", l).rstrip() for l in text.splitlines()]
    last_frame = max((i for i, l in enumerate(lines) if l.lstrip().startswith("File \"")), default=-1)
    for l in lines[last_frame + 1:]:
        # Frame source lines and ^^^ markers are indented; the exception line starts at column 0.
        # Ray heads each failure with "Failure # N (occurred at ...)": a dead worker's has no
        # traceback, and what happened is the line after it.
        if l and not l[0].isspace() and not _FAILURE_HEADER.match(l):
            return l
    return next((l.strip() for l in reversed(lines) if l.strip()), "")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        warnings.warn(f"{path}: unreadable ({e})")
        return None


def _id_from_dirname(name: str) -> str:
    m = _TRIAL_ID.search(name)
    return m.group(1) if m else name


def _searcher(run: Path) -> tuple[str, str | None]:
    """(searcher name, mode) from the searcher state, a pickle: we only look for names in its bytes."""
    for f in sorted(run.glob("searcher-state-*.pkl")):
        try:
            data = f.read_bytes()
        except OSError:
            continue
        m = re.search(rb"\x8c\x05_mode\x94\x8c\x03(max|min)", data)
        mode = m.group(1).decode() if m else None
        for name in _SEARCHERS:
            if re.search(rb"(?<![a-z_])" + name.encode() + rb"[._]", data):
                return name, mode
        return "unknown", mode
    return "basic-variant", None
