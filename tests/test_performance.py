"""Mixed precision, the FLOP count behind the share-of-peak rows, and the GPU check's CPU dry run."""
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from tests.conftest import REPO
from tuner.config import ConfigError, resolve
from tuner.models import build_model
from tuner.trainable import Precision, train


def test_bf16_autocast_runs_the_model_in_bf16_and_fp32_leaves_it_alone():
    model = build_model("cnn", (1, 28, 28), 10, resolve({"model": "cnn"}))
    x = torch.randn(4, 1, 28, 28)
    with Precision("bf16", torch.device("cpu")).autocast():
        assert model(x).dtype == torch.bfloat16
    with Precision("fp32", torch.device("cpu")).autocast():
        assert model(x).dtype == torch.float32
    assert not Precision("bf16", torch.device("cpu")).scaler.is_enabled()


def _lstm_runs_in_bf16_here() -> bool:
    # the test's own probe (a different LSTM from tuner.precision's): a bf16 forward and backward
    lstm = torch.nn.LSTM(28, 16, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = lstm(torch.randn(3, 5, 28))[0]
        out.float().sum().backward()
        return out.dtype == torch.bfloat16
    except RuntimeError as e:
        assert "primitive descriptor" in str(e), e  # oneDNN's refusal, not some other failure
        return False


def test_bf16_support_of_this_cpu_is_what_the_lstm_itself_says():
    from tuner.precision import cpu_has_bf16

    assert cpu_has_bf16() == _lstm_runs_in_bf16_here()


def test_bf16_on_a_cpu_without_bf16_kernels_is_refused_with_one_line_before_anything_runs(monkeypatch, sample_images):
    from tuner import planning, precision
    from tuner.search import parse_args

    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: False)  # what every check asks
    wanted = "precision='bf16' on this CPU: it has no bf16 kernels"
    with pytest.raises(ConfigError, match=wanted):
        resolve({"precision": "bf16", "device": "cpu"})
    with pytest.raises(ConfigError, match=wanted):  # device=auto found no GPU: the trial refuses before training
        train({"dataset": "mnist-sample", "model": "lstm", "epochs": 1, "precision": "bf16"}, data=sample_images)
    args = parse_args(["lstm_weighted", "--budget", "smoke", "--set", "precision=bf16"])
    with pytest.raises(ConfigError, match=wanted + r".* with --gpus-per-trial$"):  # the search: before Ray starts
        planning.build_plan(args)
    resolve({"precision": "bf16", "device": "cuda"})  # a GPU is another matter


@pytest.mark.skipif(not _lstm_runs_in_bf16_here(), reason="this CPU has no bf16 kernels (refused: test above)")
def test_bf16_trains_on_the_sample_and_is_recorded(sample_images):
    hist = train({"dataset": "mnist-sample", "model": "cnn", "epochs": 3, "precision": "bf16"}, data=sample_images)
    losses = [h["train_loss"] for h in hist]
    assert losses[-1] < 0.7 * losses[0], losses  # it learns: the loss falls
    assert hist[-1]["acc"] > 0.6, hist[-1]["acc"]  # far above chance (0.1) on the test images
    assert {h["precision"] for h in hist} == {"bf16"}
    fp32 = train({"dataset": "mnist-sample", "model": "cnn", "epochs": 1}, data=sample_images)
    assert fp32[0]["precision"] == "fp32" and fp32[0]["train_loss"] != hist[0]["train_loss"]  # autocast was on


def test_fp16_on_cpu_is_refused_with_one_line():
    with pytest.raises(ConfigError, match="precision='fp16' needs a CUDA GPU"):
        resolve({"precision": "fp16", "device": "cpu"})
    with pytest.raises(ConfigError, match="precision='fp64' is not allowed: expected one of fp32, bf16, fp16"):
        resolve({"precision": "fp64"})
    if not torch.cuda.is_available():  # device=auto lands on the CPU here
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            train({"dataset": "mnist-sample", "epochs": 1, "precision": "fp16"})


def test_fp16_without_gpus_per_trial_is_refused_before_ray(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tuner.search", "lstm_weighted", "--budget", "smoke", "--dataset",
                          "mnist-sample", "--set", "precision=fp16", "--storage-path", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs a CUDA GPU" in out.stderr and "--gpus-per-trial" in out.stderr
    assert not any(tmp_path.iterdir())  # no run directory: Ray never started


def test_flop_count_of_the_lstm_step_equals_the_hand_count():
    from benchmarks.limits import lstm_step_flops_by_hand, step_flops

    model = build_model("lstm", (1, 28, 28), 10, resolve({}))
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    assert step_flops(model, x, y) == lstm_step_flops_by_hand(batch=32, steps=28, inputs=28, hidden=128, classes=10)


def test_flop_count_of_a_linear_step_is_six_mnk():
    # forward 2*b*i*o; backward the weight gradient only (the input needs none): 2*b*i*o more
    from benchmarks.limits import step_flops

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10, bias=False))
    assert step_flops(model, torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))) == 2 * (2 * 8 * 784 * 10)


def test_gpu_check_without_a_gpu_says_so_and_exits_2(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--out", str(tmp_path / "g.json")], cwd=REPO,
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "no CUDA GPU visible" in out.stderr and "--dry-run" in out.stderr


def test_gpu_check_dry_run_runs_every_section_and_writes_one_json(tmp_path):
    out_file = tmp_path / "gpu-check.json"
    env = {**os.environ, "RAY_ADDRESS": "local", "PYTHON": sys.executable}
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--out", str(out_file)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    report = json.loads(out_file.read_text())
    sections = report["sections"]
    assert list(sections) == ["throughput", "lstm_epoch", "precision", "share_of_peak", "packing", "asha_search"]
    assert not [k for k, v in sections.items() if "error" in v], {k: v.get("error") for k, v in sections.items()}
    names = [r["name"] for r in report["rows"]]
    assert "lstm epoch, training part, vs the 0.5 s target" in names
    assert any(n.startswith("share of peak: lstm fp32") for n in names)
    assert sections["asha_search"]["trials"] == 2 and report["dry_run"] is True
    assert "targets met:" in out.stdout


def test_channels_last_puts_the_cnn_and_its_batches_in_nhwc_and_trains_the_same(sample_images):
    from tuner.data import make_split
    from tuner.device_data import DeviceData
    from tuner.trainable import memory_format

    cfg = resolve({"dataset": "mnist-sample", "model": "cnn", "channels_last": True})
    dd = DeviceData(sample_images, make_split(sample_images, cfg), torch.device("cpu"))
    model = memory_format(cfg, build_model("cnn", (1, 28, 28), 10, cfg), dd)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    x = dd.normalise(dd.pixels(dd.train_x[:4]))
    assert x.is_contiguous(memory_format=torch.channels_last)
    # the same arithmetic in another memory order: one epoch lands where the default lands
    base = train({"dataset": "mnist-sample", "model": "cnn", "epochs": 1}, data=sample_images)[-1]
    nhwc = train({"dataset": "mnist-sample", "model": "cnn", "epochs": 1, "channels_last": True},
                 data=sample_images)[-1]
    assert nhwc["train_loss"] == pytest.approx(base["train_loss"], rel=1e-3)
    assert abs(nhwc["acc"] - base["acc"]) < 0.01


def test_a_trial_worker_does_not_import_torchvision_models():
    # every trial's worker process imports tuner.trainable; torchvision.models (and the torch._dynamo
    # it imports, about 1 s) is for the vgg model only, imported when one is built
    code = ("import sys, tuner.trainable; from tuner.models import build_model; "
            "build_model('lstm', (1, 28, 28), 10); print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules); "
            "build_model('vgg', (3, 32, 32), 10, {'vgg_variant': 'tiny', 'pretrained': False}); "
            "print('torchvision.models' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True"]


def test_the_command_line_stops_the_local_ray_it_started_and_only_that(monkeypatch):
    from tuner import ray_compat, run, search

    calls = []
    monkeypatch.setattr(ray_compat, "shutdown_local_ray", lambda: calls.append("shutdown"))
    monkeypatch.setattr(search, "main", lambda argv, prog: 0)
    assert search.run_cli([]) == 0 and calls == []  # Ray joined, not started here (a session, --address)
    monkeypatch.setattr(run, "_started_here", [True])
    assert search.run_cli([]) == 0 and calls == ["shutdown"] and run._started_here == []


# --- the local Ray a search starts ---------------------------------------------------------------------

def _processes_with_env(key: str, value: str) -> list[int]:
    """The processes whose environment holds key=value (Ray's processes inherit the driver's)."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if needle in open(f"/proc/{entry}/environ", "rb").read().split(b"\0"):
                    found.append(int(entry))
            except OSError:  # gone, or not ours
                pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_a_local_search_runs_its_trials_in_workers_ray_started_ahead_and_leaves_no_process(tmp_path):
    import tempfile
    import time

    from tests import worker_probe
    from tuner import ray_compat

    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    probe = tmp_path / "probe.jsonl"
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, **worker_probe.HOOK, worker_probe.PROBE_FILE: str(probe), "PYTHONPATH": pythonpath,
           "RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": "local"}
    env.pop("PL_DISABLE_FORK", None)
    env.pop("MALLOC_ARENA_MAX", None)
    argv = ["lstm_weighted", "--budget", "smoke", "--dataset", "mnist-sample", "--num-samples", "2", "--max-epochs", "1",
            "--max-concurrent", "1", "--storage-path", str(tmp_path / "runs"), "--name", "probe"]
    out = subprocess.run([sys.executable, "-m", "tuner.search", *argv], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = [json.loads(line) for line in probe.read_text().splitlines()]
    assert len(seen) == 2 and len({s["pid"] for s in seen}) == 1  # one worker, reused for both trials
    # the worker imported torch, its compiler stack (the first optimizer needs it) and the package as
    # it started, before it had a trial; the trial actor has no runtime_env of its own (Tune's
    # environment variables came from the driver), so Ray ran it in a worker it had started ahead
    assert all(s["preloaded"] and s["dynamo"] for s in seen)
    # one trial at a time: Ray started one worker ahead, not one per CPU (this one), and no other
    processes = seen[0]["ray processes"]
    assert any(f"{ray_compat.PRESTART_FLAG}1" in p for p in processes if "raylet" in p), processes
    assert len([p for p in processes if "default_worker.py" in p]) == 1, processes
    assert json.loads(seen[0]["runtime_env"] or "{}").get("env_vars", {}) == {}
    assert seen[0]["PL_DISABLE_FORK"] == "1"
    # glibc malloc with one arena in the workers (a trial's new thread reuses the warm heap), and the
    # raylet's 100-ms connect retry and its workers started with it, reached this Ray
    assert seen[0]["MALLOC_ARENA_MAX at start"] == "1"
    wanted = {**ray_compat.CONNECT_RETRY, **ray_compat.WORKER_PRESTART}
    assert {k: seen[0]["system_config"].get(k) for k in wanted} == wanted
    # the Ray's head started none of the Python daemons a search does not use (the API server, the
    # autoscaler monitor, the log monitor), and this check would see them: the raylet's agents are there
    daemons = {"dashboard/dashboard.py": "API server", "autoscaler/_private/monitor.py": "autoscaler monitor",
               "_private/log_monitor.py": "log monitor"}
    assert any("runtime_env_agent" in p or "RuntimeEnvAgent" in p for p in processes), processes
    assert [name for path, name in daemons.items() if any(path in p for p in processes)] == []
    # the command line stopped every process of its Ray
    deadline = time.monotonic() + 30
    while _processes_with_env("RAY_TMPDIR", ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_with_env("RAY_TMPDIR", ray_tmp) == []


def test_the_lean_head_leaves_ray_as_it_was_once_the_local_ray_has_started():
    from ray._private.node import Node

    from tuner import ray_compat

    from ray._private import services

    before = Node.__init__, Node.start_api_server, services.start_ray_process
    with pytest.raises(RuntimeError, match="ray.init failed"):
        with ray_compat.head_without_idle_daemons(workers=1):
            assert all(a is not b for a, b in zip((Node.__init__, Node.start_api_server, services.start_ray_process),
                                                  before))
            raise RuntimeError("ray.init failed")
    # a Ray started later (tests, a session) is Ray's own
    assert (Node.__init__, Node.start_api_server, services.start_ray_process) == before


def test_the_local_ray_starts_one_worker_ahead_per_concurrent_trial(monkeypatch):
    from ray._private import services

    from tuner import ray_compat, run

    started = []

    def fake_start(command, process_type, *args, **kwargs):  # what Ray's start_ray_process would be given
        started.append((process_type, command))

    def fake_init(**kwargs):  # the raylet and another process, as Ray's Node starts them
        services.start_ray_process(["raylet", "--head", f"{ray_compat.PRESTART_FLAG}4"],
                                   services.ray_constants.PROCESS_TYPE_RAYLET, fate_share=False)
        services.start_ray_process(["gcs_server", f"{ray_compat.PRESTART_FLAG}4"],
                                   services.ray_constants.PROCESS_TYPE_GCS_SERVER, fate_share=False)

    monkeypatch.setattr(services, "start_ray_process", fake_start)
    monkeypatch.setattr("ray.init", fake_init)
    monkeypatch.setattr("ray.is_initialized", lambda: False)
    monkeypatch.setattr("ray.cluster_resources", lambda: {"CPU": 4})
    monkeypatch.setattr(ray_compat, "local_cpus", lambda: 4)
    monkeypatch.setattr(ray_compat, "shutdown_local_ray", lambda: None)
    plan = SimpleNamespace(address=None, max_concurrent=None, cpus_per_trial=2.0)
    try:
        assert run.start_ray(plan) == 4
    finally:
        run.stop_local_ray()
    # 4 CPUs / 2 per trial: two trials at once, two workers ahead; only the raylet's command changes
    assert started == [("raylet", ["raylet", "--head", f"{ray_compat.PRESTART_FLAG}2"]),
                       ("gcs_server", ["gcs_server", f"{ray_compat.PRESTART_FLAG}4"])]
    assert services.start_ray_process is fake_start  # restored once Ray has started


def test_on_a_cluster_trial_actors_keep_the_environment_ray_tune_gives_them(monkeypatch):
    from ray.tune.execution import class_cache

    from tuner import ray_compat

    monkeypatch.setenv("PL_DISABLE_FORK", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-driver")
    try:
        ray_compat.trial_actors_inherit_env(local=True)  # a local Ray: its workers inherit the driver's environment
        assert class_cache.DEFAULT_ENV_VARS == {} and not class_cache.ENV_VARS_TO_PROPAGATE
        ray_compat.trial_actors_inherit_env(local=False)  # a cluster: Tune sends them to the other machines
        assert class_cache.DEFAULT_ENV_VARS == ray_compat.TUNE_TRIAL_ENV
        assert "AWS_ACCESS_KEY_ID" in class_cache.ENV_VARS_TO_PROPAGATE
        monkeypatch.setenv("PL_DISABLE_FORK", "0")  # the driver's value differs from Tune's: Tune's is kept
        ray_compat.trial_actors_inherit_env(local=True)
        assert class_cache.DEFAULT_ENV_VARS == ray_compat.TUNE_TRIAL_ENV
    finally:
        ray_compat.trial_actors_inherit_env(local=False)


def test_the_checks_before_ray_find_a_local_run_as_ray_tune_does_without_importing_it(tmp_path):
    # in a subprocess: this one has imported Ray Tune already. `import ray.tune` takes ~0.9 s, and
    # every check runs before Ray starts, so a check that imported it delayed every search
    code = """
import sys
from pathlib import Path
from tuner import ray_compat
from tuner.plan import parse_args
from tuner.planning import prepare
root = Path(sys.argv[1])
argv = ["lstm_weighted", "--budget", "smoke", "--dataset", "mnist-sample", "--storage-path", str(root), "--name", "r"]
prepare(parse_args(argv, "x"), argv, "x")
print("ray.tune imported by the checks:", "ray.tune" in sys.modules)
(root / "absent").mkdir()
(root / "with_tuner").mkdir()
(root / "with_tuner" / "tuner.pkl").write_bytes(b"x")
ours = [ray_compat.can_restore(str(root / d)) for d in ("absent", "with_tuner", "nowhere")]
from ray.tune import Tuner
print(ours, [Tuner.can_restore(str(root / d)) for d in ("absent", "with_tuner", "nowhere")])
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()  # after the plan that prepare() prints
    assert lines[-2] == "ray.tune imported by the checks: False"
    assert lines[-1] == "[False, True, False] [False, True, False]"  # the same answers as Ray Tune's own test


def test_the_command_line_exits_without_teardown_but_keeps_what_the_teardown_did(tmp_path):
    # exit_without_teardown ends the process with os._exit: the exit code must still be the
    # command's, and the atexit functions, the threads that are not daemons and buffered output must
    # still run and reach their end, as in a normal exit
    code = """
import atexit, sys, threading, time
from pathlib import Path
from tuner.search import exit_without_teardown
out = Path(sys.argv[1])
def command(kind):
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
    sys.stdout.write("no newline, still buffered")
    if kind == "code":
        return 3
    if kind == "exit":
        sys.exit(2)
    sys.exit("a message")
exit_without_teardown(command, sys.argv[2])
print("not reached")
"""
    for kind, code_expected, err_expected in (("code", 3, ""), ("exit", 2, ""), ("message", 1, "a message\n")):
        d = tmp_path / kind
        d.mkdir()
        out = subprocess.run([sys.executable, "-c", code, str(d), kind], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert (out.returncode, out.stdout, out.stderr) == (code_expected, "no newline, still buffered", err_expected)
        assert (d / "atexit").read_text() == "ran" and (d / "thread").read_text() == "done"


def test_the_driver_checks_every_experiment_before_ray_without_importing_torch(tmp_path):
    # every built-in experiment on the shipped sample: the options, the data and every config a
    # trial can get are checked (`prepare`) with the registries alone, so Ray starts 2 s sooner
    # (torch is imported where a trial runs: tuner.lazy); CIFAR's loader needs torchvision, so not there
    code = f"""
import sys
from search_spaces import EXPERIMENTS
from tuner.search import parse_args, prepare
checked = []
for name, exp in EXPERIMENTS.items():
    if exp.fixed.get("dataset") == "cifar10":
        continue
    dataset = "digit_pairs-sample" if name == "digit_pairs" else "mnist-sample"
    argv = [name, "--budget", "smoke", "--dataset", dataset, "--storage-path", {str(tmp_path)!r}, "--name", name]
    if name == "lstm_class_weights":  # its weights come from a lstm_weighted_loss run
        argv += ["--set", "class_weights=[1,1,1,1,1,2,2,2,2,2]"]
    prepare(parse_args(argv), argv)
    checked.append(name)
print(len(checked), sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "22 []"


def test_a_lazy_module_is_imported_when_first_read_and_pickles_by_name():
    code = """
import pickle, sys
from tuner.lazy import lazy
namespace = {}
m = namespace["cs"] = lazy("colorsys", namespace)
before = "colorsys" in sys.modules
hsv = m.rgb_to_hsv(1.0, 0.0, 0.0)
import colorsys
back = pickle.loads(pickle.dumps(m))
print(before, "colorsys" in sys.modules, hsv == colorsys.rgb_to_hsv(1.0, 0.0, 0.0),
      back.hls_to_rgb(0, 0.5, 1) == colorsys.hls_to_rgb(0, 0.5, 1), namespace["cs"] is colorsys)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    # imported at the first read, which rebinds the name to the module itself; pickled by name
    assert out.stdout.split() == ["False", "True", "True", "True", "True"]
