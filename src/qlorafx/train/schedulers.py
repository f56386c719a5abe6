"""Learning-rate schedules, by recipe name -> transformers' scheduler type.

The Trainer builds the schedule itself (so it is saved and restored with its checkpoints);
warm-up comes from the recipe's scheduler.warmup_steps or warmup_ratio.
"""

from qlorafx.registry import Registry

SCHEDULERS: Registry[str] = Registry("scheduler")

SCHEDULERS.register("constant")("constant_with_warmup")  # no warm-up set: plain constant
SCHEDULERS.register("cosine")("cosine")
SCHEDULERS.register("linear")("linear")
