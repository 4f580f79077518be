"""The search on a real multi-node Ray cluster: a head and two worker nodes on this machine.

`ray.cluster_utils.Cluster` starts a head node (GCS, no CPUs) and two worker nodes (raylet and
object store each) with 4 CPUs and 1 *logical* GPU each: no CUDA here, so trials get
CUDA_VISIBLE_DEVICES=0, torch sees no GPU and device=auto trains on CPU. The CLI
(`--address HEAD --gpus-per-trial 0.5`) runs against it as it would after `ray up`; a local
storage path is shared storage because all nodes share the disk. Mid-search one worker node is
killed (`Cluster.remove_node`). Ray Tune's logging of a retried trial is also checked on its own,
deterministically (one local Ray, a trial that dies once).

Isolation: every Ray here lives in subprocesses with a private RAY_TMPDIR, so nothing touches this
pytest process's Ray (the session fixture's), and the cluster's address file never lands in
/tmp/ray, where a plain `ray.init()` by any other test on this machine would find and join it.
"""
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The node is killed under a trial with at least 3 epochs to go (an epoch takes 1-2 s on an idle
# machine, 4-9 s on a loaded one): it is still running when its node is gone, however fast the machine.
EPOCHS, TRIALS, EPOCHS_LEFT = 5, 5, 3
ORPHAN_S = 10  # how long a trial process may outlive its killed node
USAGE = re.compile(r"Logical resource usage: ([\d.]+)/([\d.]+) CPUs, ([\d.]+)/([\d.]+) GPUs")

# The cluster, driven line by line over stdin: "kill I" removes worker I (no graceful shutdown:
# a crashed machine), "quit" (or EOF: the test died) shuts everything down.
CLUSTER = r"""
import json, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
workers = [cluster.add_node(num_cpus=4, num_gpus=1) for _ in range(2)]
cluster.wait_for_nodes()
print(json.dumps({"address": cluster.address, "head": cluster.head_node.node_id,
                  "workers": [w.node_id for w in workers]}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if cmd and cmd[0] == "kill":
        cluster.remove_node(workers[int(cmd[1])], allow_graceful=False)
        print("killed", flush=True)
    elif cmd and cmd[0] == "quit":
        break
cluster.shutdown()
print("down", flush=True)
"""

# The real CLI entry point, with two probes for "the data goes into the object store once per
# search": the driver's dataset gets a name no worker-side load_dataset could produce (every
# trial reports the name of the data it trained on), and each ray.put of an Images is counted.
DRIVER = r"""
import dataclasses, sys
import ray
import tuner.planning as planning
import tuner.search as search
from tuner.data import Images

load = planning.load_images  # what tuner.planning.prepare calls
planning.load_images = lambda plan: dataclasses.replace(load(plan), name="mnist-sample@driver")
put, puts = ray.put, []

def counting_put(value, *args, **kwargs):
    if isinstance(value, Images):
        puts.append(value.name)
    return put(value, *args, **kwargs)

ray.put = counting_put
code = search.main(sys.argv[1:])
print("IMAGES_PUT", len(puts), flush=True)
sys.exit(code)
"""


# A trial whose process dies once right after reporting epoch 3 (as on a lost node), retried by
# Tune from its epoch-3 checkpoint, logged by the search's own result loggers. The timing makes
# storage stale for certain: num_to_keep=2 forces an experiment snapshot after epoch 2 (the 1 s
# pauses let it finish), and no periodic snapshot comes (TUNE_GLOBAL_CHECKPOINT_S), so storage
# holds epochs 1-2 when the trial restarts. Without the fix Tune writes epochs [1, 2, 4].
RETRY = r"""
import json, os, sys, tempfile, time
from pathlib import Path
import ray
from ray import tune
from tuner.search import _result_loggers

def trainable(config):
    start = 1
    if tune.get_checkpoint():
        with tune.get_checkpoint().as_directory() as d:
            start = json.loads(Path(d, "epoch.json").read_text()) + 1
    for epoch in range(start, 5):
        with tempfile.TemporaryDirectory() as d:
            Path(d, "epoch.json").write_text(json.dumps(epoch))
            tune.report({"epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(d))
        time.sleep(1)
        if epoch == 3 and not Path(config["died"]).exists():
            Path(config["died"]).touch()
            os._exit(1)

out = sys.argv[1]
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
tune.Tuner(trainable, param_space={"died": out + "/died"}, run_config=tune.RunConfig(
    name="R", storage_path=out, failure_config=tune.FailureConfig(max_failures=2), callbacks=_result_loggers(),
    checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=0)).fit()
"""


def trial_results(run_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sorted(run_dir.glob("*/result.json")):
        try:
            out[f.parent.name] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError:  # a line being written right now: read it on the next poll
            continue
    return out


class HelperCluster:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", CLUSTER], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            info = json.loads(self._line(120))
        except Exception:
            self.close()
            raise
        self.address, self.head, self.workers = info["address"], info["head"], info["workers"]

    def _line(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"cluster helper gave no answer in {timeout:.0f} s (exit code {self.proc.poll()})")
        return line

    def kill_worker(self, index: int) -> None:
        self.proc.stdin.write(f"kill {index}\n")
        self.proc.stdin.flush()
        assert self._line(60).strip() == "killed"

    def close(self) -> None:
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what this test started
            self.proc.wait()


@pytest.fixture
def ray_env():
    # short: Ray's unix socket paths live under it (108 bytes at most)
    tmp = tempfile.mkdtemp(prefix="rmn", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": tmp, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    yield env
    shutil.rmtree(tmp, ignore_errors=True)


def segments(results: dict[str, list[dict]]) -> list[tuple[str, str, float, float]]:
    """(trial, node, start, end) of each stretch a trial ran on one node, as an interval inside the
    true one: Ray's `timestamp` is floored to whole seconds, so the stretch began before
    `timestamp - time_this_iter_s + 1` of its first row and ended after its last row's `timestamp`."""
    out = []
    for trial, rows in results.items():
        if not rows:
            continue
        run = [rows[0]]
        for row in rows[1:] + [None]:
            if row is not None and row["node_id"] == run[-1]["node_id"]:
                run.append(row)
                continue
            first = run[0]
            start = first["timestamp"] - first["time_this_iter_s"] + 1
            out.append((trial, first["node_id"], start, run[-1]["timestamp"]))
            run = [row]
    return out


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, e in intervals if e > s] + [(e, -1) for s, e in intervals if e > s])
    level = peak = 0
    for _, step in events:  # an end sorts before a start at the same time: touching is not overlapping
        level += step
        peak = max(peak, level)
    return peak


def test_search_spreads_packs_and_survives_a_lost_worker_node(ray_env, tmp_path):
    cluster, driver = HelperCluster(ray_env), None
    try:
        # a search that forgot --gpus-per-trial on a cluster with GPU nodes is refused, naming them
        refused = subprocess.run([sys.executable, "-m", "tuner.search", "lstm_weighted", "--budget", "smoke",
                                  "--address", cluster.address, "--storage-path", str(tmp_path), "--name", "NOGPU"],
                                 cwd=REPO, env=ray_env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stdout[-2000:] + refused.stderr[-2000:]
        assert re.search(r"error: --gpus-per-trial 0 on a cluster with GPU nodes \(\S+ \(1 GPU\), \S+ \(1 GPU\)\)",
                         refused.stderr), refused.stderr[-2000:]
        assert not list((tmp_path / "NOGPU").glob("trial_*")), "no trial may start"
        # random + no ASHA: exactly TRIALS trials, each runs every epoch
        args = ["lstm_weighted", "--budget", "smoke", "--searcher", "random", "--no-asha",
                "--num-samples", str(TRIALS), "--max-epochs", str(EPOCHS), "--gpus-per-trial", "0.5",
                "--address", cluster.address, "--storage-path", str(tmp_path), "--name", "M"]
        log = tmp_path / "driver.log"
        with log.open("w") as out:
            driver = subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=REPO, env=ray_env,
                                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        run = tmp_path / "M"
        before_kill, killed, t0 = None, None, time.time()
        while driver.poll() is None and time.time() - t0 < 400:
            results = trial_results(run) if run.exists() else {}
            finished = {t: r for t, r in results.items() if r and r[-1]["epoch"] == EPOCHS}
            mid = [r[-1] for r in results.values() if r and 1 <= r[-1]["epoch"] <= EPOCHS - EPOCHS_LEFT]
            if killed is None and finished and mid:
                # a trial has finished and another is mid-way with a checkpoint: lose the latter's node
                killed = min(mid, key=lambda row: row["epoch"])["node_id"]
                cluster.kill_worker(cluster.workers.index(killed))
                # A crashed machine takes its processes with it. remove_node stops the node's raylet;
                # its trial processes notice only later and, on a fast machine, could train the
                # trial to its end in the meantime, leaving nothing to retry elsewhere.
                on_node = {r["pid"] for rows in trial_results(run).values() for r in rows if r["node_id"] == killed}
                for pid in on_node:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                before_kill, killed_at = trial_results(run), time.time()
            time.sleep(0.25)
    finally:
        if driver is not None and driver.poll() is None:  # out of time, or this test failed mid-way
            os.killpg(driver.pid, signal.SIGKILL)  # its own session: only what this test started
            driver.wait()
        cluster.close()
    output = log.read_text()
    assert driver.returncode == 0, output[-4000:]
    assert killed is not None, "the search ended before a worker could be killed mid-way"
    survivor = next(w for w in cluster.workers if w != killed)
    results = trial_results(run)
    rows = [r for trial in results.values() for r in trial]

    # complete: one result.json per trial with every epoch, nothing failed. A trial on the lost node
    # resumes from its latest *registered* checkpoint: Ray Tune registers a reported checkpoint in a
    # second step after logging the result, so a node lost in between re-runs that one epoch (seen
    # once in four CI runs, 2026-12-04: [1, 2, 2, 3, 4, 5]). More than one repeat would be a restart
    # from an older checkpoint or from scratch.
    assert len(results) == TRIALS
    for trial, trial_rows in results.items():
        epochs = [r["epoch"] for r in trial_rows]
        assert sorted(set(epochs)) == list(range(1, EPOCHS + 1)) and epochs[-1] == EPOCHS, (trial, epochs)
        repeats = len(epochs) - EPOCHS
        on_lost_node = any(r["node_id"] == killed for r in trial_rows)
        assert repeats == 0 or (repeats == 1 and on_lost_node and epochs == sorted(epochs)), (trial, epochs)
    assert f"{TRIALS} trials: {TRIALS} finished" in output and "0 failed" in output, output[-3000:]

    # spread over both worker nodes, never on the head (it declares no GPU)
    assert {r["node_id"] for trial in before_kill.values() for r in trial} == set(cluster.workers)
    assert cluster.head not in {r["node_id"] for r in rows}

    # the data came from the driver through the object store, put there once for the whole search
    assert {r["dataset"] for r in rows} == {"mnist-sample@driver"}
    assert "IMAGES_PUT 1\n" in output

    # 0.5 GPU each. Tune's own accounting: every placed trial holds 1 CPU and 0.5 GPU, and at the
    # peak 4 trials held both GPUs while half the CPUs stayed free (the GPU request set the packing)
    usage = [tuple(map(float, m)) for m in USAGE.findall(output)]
    assert usage and all(cpu == 2 * gpu for cpu, _, gpu, _ in usage), usage
    assert max(usage) == (4.0, 8.0, 2.0, 2.0), usage
    # ... and on the nodes: two trials trained at the same time on one node's one logical GPU
    per_node = [most_at_once([(s, e) for _, n, s, e in segments(results) if n == node]) for node in cluster.workers]
    # (the spread over both nodes is checked above: a node whose trials were cut short by the kill
    # can have no stretch long enough to show here, with timestamps floored to whole seconds)
    assert max(per_node) == 2, per_node

    # the lost node: what was written before it went stays as it was (finished trials untouched)...
    for trial, trial_rows in before_kill.items():
        assert results[trial][: len(trial_rows)] == trial_rows
    # ... nothing ran there for long after it was gone, and the trials it was running moved to the
    # survivor for good, resuming from their last checkpoint: with every epoch exactly once (above),
    # the next epoch, none lost or repeated. A trial process on the lost node can outlive its raylet
    # until the test kills it and still deliver the epoch it was finishing (straight to the driver,
    # not via the raylet): seen here 1 run in 4. That epoch counts, and its checkpoint is what the
    # retry resumes.
    moved = []
    for trial, trial_rows in results.items():
        nodes = [r["node_id"] for r in trial_rows]
        assert nodes == [killed] * nodes.count(killed) + [survivor] * nodes.count(survivor), trial
        late = [r["timestamp"] - killed_at for r in trial_rows if r["node_id"] == killed]
        assert all(t <= ORPHAN_S for t in late), (trial, late)
        if killed in nodes and survivor in nodes:
            moved.append(trial)
    assert moved


def test_a_retried_trial_keeps_the_results_of_its_lost_attempt(ray_env, tmp_path):
    """Ray Tune 2.60 restarts a failed trial by copying its result.json back from storage, which
    lags the driver by up to one experiment snapshot: the rows in between (epoch 3 here) vanished.
    The search's loggers keep the driver's copy."""
    env = {**ray_env, "TUNE_GLOBAL_CHECKPOINT_S": "3600"}
    done = subprocess.run([sys.executable, "-c", RETRY, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "died").exists()  # the first attempt did die after epoch 3
    [rows] = trial_results(tmp_path / "R").values()
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["iterations_since_restore"] for r in rows] == [1, 2, 3, 1]  # epoch 4 ran in the retry
