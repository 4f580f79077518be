"""Imported by every worker process of the local Ray a search starts, as the process starts
(`tuner.run.start_ray`, `ray_compat.local_ray_options`): what the first trial would otherwise wait
for. Ray starts one worker per trial that runs at once while `ray.init` runs, before Tune asks for
the first trial (`ray_compat.head_without_idle_daemons`; `ray_compat.trial_actors_inherit_env`
lets the trial take one of them)."""
import torch._dynamo  # noqa: F401  (torch.optim imports it when the first optimizer is built: about 2 s)

import tuner.trainable  # noqa: F401  (torch, the models, the remedies and the tasks)
