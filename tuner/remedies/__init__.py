"""Class-imbalance remedies, one object each (`tuner.remedies.base.Remedy`), registered in this
order (the order of the `remedies` column and of the hooks):

    weights      weighted_loss                       per-class loss weights
    sampling     ros, noise_copies                   extra minority samples each epoch
    augmentation noise, rotation (augment_scope)     batched pixel augmentation
    irm          irm                                 IRMv1 penalty, annealed in
    loss         loss, cb, focal, ldam, drw, logit_adjusted, balanced_softmax
    class_aware  class_aware_sampling                the epoch's sample, class by class
    remix        remix                               mixup with minority labels
    schedule     cosine_lr, posthoc_logit_adjustment,  the learning rate over the epochs; the logits at test
                 weight_ema                           time; the averaged weights evaluated

Adding one: a module (or a class in one of these) with a `Remedy` subclass decorated with
`@register`; nothing else names it (docs/architecture.md).
"""
from tuner.remedies.base import (  # noqa: F401
    LOSSES, REMEDIES, Batch, Copies, EpochContext, EpochPlan, Remedy, active, check, class_weight_vector, epoch_plan,
    extra, hooks, install, make_loss, params, register, running, search_range, setting, unregister,
)
from tuner.remedies import weights, sampling, augmentation, irm, loss, class_aware, remix, schedule  # noqa: F401,E402  (registers, in this order)
from tuner.remedies.augmentation import add_noise, augment, rotate  # noqa: F401,E402
from tuner.remedies.class_aware import class_aware_plan, class_sampling_probs  # noqa: F401,E402
from tuner.remedies.irm import irm_environments_penalty, irm_penalty, irm_weight  # noqa: F401,E402


def __getattr__(name):
    if name == "PARAMS":  # every remedy setting, including those registered later
        return params()
    raise AttributeError(name)

