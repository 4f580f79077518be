"""Imported by every worker process of the local Ray a search starts, as the process starts
(`tuner.run.start_ray`, `ray_compat.local_ray_options`): what the first trial would otherwise wait
for. Ray starts one worker per CPU while `ray.init` runs, before Tune asks for the first trial's
(`ray_compat.trial_actors_inherit_env` lets the trial take one of them)."""
import torch._dynamo  # noqa: F401  (torch.optim imports it when the first optimizer is built: about 1 s)

import tuner.trainable  # noqa: F401  (torch, the models, the remedies and the tasks)
