import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# full MNIST (and CIFAR-10) beside the repo on the developers' and CI machines; users won't have it
SHARED_DATA = Path(os.environ.get("TUNER_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"full MNIST not found under {SHARED_DATA} (set TUNER_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every test that runs a search."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sample_images():
    from tuner.data import load_dataset

    return load_dataset("mnist-sample")


@pytest.fixture(autouse=True, scope="session")
def no_exit_without_teardown_in_the_test_process():
    """`tuner.search.exit_without_teardown` ends its process with os._exit. Reached inside pytest's
    own process, it would end the whole test run with the command's exit code, the remaining tests
    unrun: a 0 that reads as a pass. It is tested in subprocesses; here it fails the test instead."""
    from tuner import search

    def refuse(*args, **kwargs):
        raise AssertionError("tuner.search.exit_without_teardown called inside the pytest process: it would end "
                             "the test run (call run_cli, or run the command in a subprocess)")

    original, search.exit_without_teardown = search.exit_without_teardown, refuse
    yield
    search.exit_without_teardown = original
