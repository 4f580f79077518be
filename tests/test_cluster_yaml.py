"""Offline checks of cluster.yaml, the Ray cluster launcher config (AWS, GPU workers).

What `ray up cluster.yaml` does with the file, in ray.autoscaler._private.commands._bootstrap_config:
  1. prepare_config(raw): merges ray/autoscaler/aws/defaults.yaml (a file shipped with Ray),
     folds setup_commands into head/worker_setup_commands, checks the docker block and fills
     per-node-type min/max_workers. Pure Python: no boto3, no network, no credentials.
  2. AWSNodeProvider.fillout_available_node_types_resources: EC2 DescribeInstanceTypes
     (network + credentials). It only ADDS autodetected resources (memory, accelerator type);
     resources written in the file take precedence.
  3. validate_config(config): jsonschema check against ray/autoscaler/ray-schema.json, plus
     head_node_type / min_workers consistency. Pure Python.
  4. bootstrap_aws: IAM profile, key pair, subnets, security group (network + credentials).
Here we run 1 and 3, the checks `ray up` would fail on before touching AWS, with sockets
blocked to prove that no network is used. 2 and 4 need an AWS account and are not run.
"""
from __future__ import annotations

import copy
import re
import socket
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")  # comes with ray; validate_config needs it
ray = pytest.importorskip("ray")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to open a connection or resolve a host name."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def raw() -> dict:
    with open(CLUSTER_YAML) as f:
        return yaml.safe_load(f)


@pytest.fixture
def config(raw, no_network) -> dict:
    return prepare_config(copy.deepcopy(raw))


def node_types(cfg: dict) -> dict:
    return cfg["available_node_types"]


def worker_types(cfg: dict) -> dict:
    return {k: v for k, v in node_types(cfg).items() if k != cfg["head_node_type"]}


# --- Ray accepts the file -----------------------------------------------------------------


def test_prepare_and_validate_offline(config, no_network):
    validate_config(config)  # raises jsonschema.ValidationError / ValueError when broken
    assert config["provider"]["type"] == "aws"
    assert config["provider"]["region"] == "us-west-2"
    assert config["provider"]["cache_stopped_nodes"] is False
    assert config["cluster_name"] == "imbalance-tune"


def test_required_top_level_keys_are_written_not_defaulted(raw):
    # prepare_config silently fills missing keys from Ray's defaults.yaml (an m5.large spot
    # worker, a 'default' cluster name...), so check that the file states its own choices.
    for key in ("cluster_name", "provider", "max_workers", "idle_timeout_minutes", "upscaling_speed",
                "available_node_types", "head_node_type", "file_mounts", "setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in raw, f"cluster.yaml should set {key!r} itself"


# --- node types and resources ------------------------------------------------------------


def test_every_resource_value_is_an_int(raw):
    for name, nt in node_types(raw).items():
        assert nt.get("resources"), f"{name}: declare resources explicitly"
        for res, value in nt["resources"].items():
            assert type(value) is int, f"{name}.resources.{res}={value!r} must be an int (Ray schema)"
            assert value >= 0


def test_a_node_type_has_a_gpu(config):
    gpus = {name: nt["resources"].get("GPU", 0) for name, nt in worker_types(config).items()}
    assert any(type(g) is int and g >= 1 for g in gpus.values()), gpus
    # ... and the GPU type can actually be launched.
    assert any(nt["resources"].get("GPU", 0) >= 1 and nt["max_workers"] >= 1
               for nt in worker_types(config).values())


def test_head_has_no_gpu_and_no_workers_of_its_type(config):
    head = node_types(config)[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["max_workers"] == 0
    # ... and is not a GPU instance (g*/p* families) that would bill GPU hours for nothing.
    assert not head["node_config"]["InstanceType"].startswith(("g", "p")), head["node_config"]["InstanceType"]


def test_head_advertises_no_cpu_for_trials(config):
    # The launcher starts Ray on the head with these resources: a trial asking for CPUs only (a
    # forgotten --gpus-per-trial) can never run there, so it waits for a worker the autoscaler starts.
    head = node_types(config)[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, head["resources"]


def test_workers_install_the_pinned_tested_versions(raw):
    import importlib.metadata

    install = [c for c in raw["setup_commands"] if "pip install" in c]
    assert install and all(" -c ~/imbalance-tune/constraints-cluster.txt " in f" {c} " for c in install), install
    pins = {}
    for line in (REPO / "constraints-cluster.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r}: pin an exact version (==)"
            pins[name.lower()] = version
    # every runtime dependency of the project is pinned ...
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ]", d)[0].lower() for d in deps}
    assert names <= set(pins), sorted(names - set(pins))
    # ... at the version this test suite runs with: the tested set
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, f"{name}: pinned {version}, tested with {importlib.metadata.version(name)}"


def test_worker_counts_are_bounded(config):
    assert config["max_workers"] >= 1
    for name, nt in worker_types(config).items():
        assert nt["min_workers"] == 0, f"{name}: scale to zero when idle (min_workers 0)"
        assert nt["max_workers"] <= config["max_workers"]


def test_gpu_workers_can_write_to_s3_without_keys(config):
    # Trials write to --storage-path s3://... from the workers: they need an instance profile.
    for name, nt in worker_types(config).items():
        if nt["resources"].get("GPU", 0) >= 1:
            profile = nt["node_config"].get("IamInstanceProfile")
            assert profile and (profile.get("Name") or profile.get("Arn")), f"{name}: no IamInstanceProfile"


def test_docker_image_matches_local_ray(config):
    # The cluster launcher expects the same Ray version locally and on the cluster.
    image = config["docker"]["image"]
    assert image.startswith("rayproject/ray"), image
    assert f":{ray.__version__}-" in image, f"{image} does not match local ray {ray.__version__}"
    assert "gpu" in image.split(":")[1]
    assert "--ulimit nofile=65536:65536" in config["docker"]["run_options"]


# --- the project is installed from the synced checkout ----------------------------------


def test_checkout_is_mounted_and_installed_editable(raw, config):
    mounts = raw["file_mounts"]
    repo_targets = [remote for remote, local in mounts.items() if (REPO / local).resolve() == REPO]
    assert repo_targets, f"no file mount maps the repository root: {mounts}"
    remote = repo_targets[0]
    install = [c for c in raw["setup_commands"] if re.search(r"\bpip install\b.*\s-e\s+" + re.escape(remote) + r"/?(\s|$)", c)]
    assert install, f"setup_commands must `pip install -e {remote}`: {raw['setup_commands']}"
    # prepare_config folds setup_commands into both head and worker setup.
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert install[0] in config[key]
    # Large local folders are not uploaded.
    assert ".gitignore" in raw.get("rsync_filter", []) or ".venv" in raw.get("rsync_exclude", [])


def test_start_commands_follow_ray_example(config):
    head = " ; ".join(config["head_start_ray_commands"])
    assert config["head_start_ray_commands"][0] == "ray stop"
    assert "ray start --head" in head and "--port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    worker = " ; ".join(config["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker


# --- nothing secret, nothing open --------------------------------------------------------

SECRET_PATTERNS = [
    re.compile(r"aws_access_key_id", re.I),
    re.compile(r"aws_secret_access_key", re.I),
    re.compile(r"aws_session_token", re.I),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"arn:aws:iam::\d{12}:"),  # an account id
]


def test_no_secrets_in_file():
    for lineno, line in enumerate(CLUSTER_YAML.read_text().splitlines(), 1):
        for pat in SECRET_PATTERNS:
            assert not pat.search(line), f"cluster.yaml:{lineno} matches {pat.pattern!r}: {line.strip()}"


def test_only_ssh_is_opened(config):
    # Ray's default security group opens TCP 22 to the world plus intra-cluster traffic.
    # Any extra rule declared here must also be port 22 only.
    for rule in config["provider"].get("security_group", {}).get("IpPermissions", []):
        assert (rule.get("FromPort"), rule.get("ToPort")) == (22, 22), rule
    for name, nt in node_types(config).items():
        nc = nt["node_config"]
        assert "SecurityGroupIds" not in nc, f"{name}: custom security groups can't be checked here"
        for ni in nc.get("NetworkInterfaces", []):
            assert "Groups" not in ni, f"{name}: custom security groups can't be checked here"


# --- the validation can fail -------------------------------------------------------------


def corrupt_float_resource(cfg):
    next(iter(worker_types(cfg).values()))["resources"]["GPU"] = 0.25


def corrupt_string_resource(cfg):
    node_types(cfg)[cfg["head_node_type"]]["resources"]["CPU"] = "8"


def corrupt_missing_provider(cfg):
    del cfg["provider"]


def corrupt_missing_node_config(cfg):
    del next(iter(worker_types(cfg).values()))["node_config"]


def corrupt_unknown_key(cfg):
    cfg["max_worker"] = 4  # typo of max_workers


def corrupt_unknown_head_type(cfg):
    cfg["head_node_type"] = "ray.head.gpu"


def corrupt_min_workers_over_max(cfg):
    next(iter(worker_types(cfg).values()))["min_workers"] = cfg["max_workers"] + 1


@pytest.mark.parametrize("corrupt, error, message", [
    (corrupt_float_resource, jsonschema.ValidationError, "is not of type 'integer'"),
    (corrupt_string_resource, jsonschema.ValidationError, "is not of type 'integer'"),
    (corrupt_missing_provider, jsonschema.ValidationError, "'provider' is a required property"),
    (corrupt_missing_node_config, jsonschema.ValidationError, "'node_config' is a required property"),
    (corrupt_unknown_key, jsonschema.ValidationError, "'max_worker' was unexpected"),
    (corrupt_unknown_head_type, ValueError, "head_node_type"),
    (corrupt_min_workers_over_max, ValueError, "min_workers"),
], ids=["float_resource", "string_resource", "missing_provider", "missing_node_config", "unknown_key",
        "unknown_head_type", "min_workers_over_max"])
def test_validate_config_rejects_corrupted_copy(config, corrupt, error, message):
    validate_config(copy.deepcopy(config))  # the intact copy passes ...
    bad = copy.deepcopy(config)
    corrupt(bad)
    with pytest.raises(error, match=re.escape(message)):  # ... the corrupted one fails, for that reason
        validate_config(bad)


def test_float_resource_in_raw_yaml_is_rejected(raw, no_network):
    # The same mistake made in the YAML file itself, through the full prepare + validate path.
    bad = copy.deepcopy(raw)
    next(iter(worker_types(bad).values()))["resources"]["GPU"] = 0.5
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(bad))
