"""Imported by every worker process of the local Ray a search starts, as the process starts
(`tuner.run.start_ray`, `ray_compat.local_ray_options`): what the first trial would otherwise wait
for. Ray starts one worker per CPU while `ray.init` runs, before Tune asks for the first trial's
(`ray_compat.trial_actors_inherit_env` lets the trial take one of them).

Only as many workers import as trials will run at once (`ray_compat.preload_slots`): with one
trial at a time on 2 cores, a second worker importing torch beside the first took the CPU the
first one's imports needed, and the first trial started later (docs/performance.md)."""
import os

from tuner.ray_compat import SLOTS_DIR_ENV, SLOTS_ENV


def claim_slot(slots_dir: str | None, slots: int | None) -> bool:
    """Whether this worker preloads: one of the first `slots` to create its file in `slots_dir`
    (O_EXCL: one winner per file, whichever worker process gets there first). Without a slot
    folder (a Ray not started by the search, the variables unset) or when it cannot be written,
    every worker preloads, as Ray would have it."""
    if not slots_dir or slots is None:
        return True
    for slot in range(slots):
        try:
            os.close(os.open(os.path.join(slots_dir, str(slot)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            continue
        except OSError:  # the folder is gone (its search ended) or not writable: the safe default
            return True
    return False


preloaded = claim_slot(os.environ.get(SLOTS_DIR_ENV), int(os.environ[SLOTS_ENV]) if os.environ.get(SLOTS_ENV) else None)
if preloaded:
    import torch._dynamo  # noqa: F401  (torch.optim imports it when the first optimizer is built: about 1 s)

    import tuner.trainable  # noqa: F401  (torch, the models, the remedies and the tasks)
