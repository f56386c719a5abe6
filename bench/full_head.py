"""The output head's paths, for the bench's A/B rows: over every position, as before issue 15 ("full");
at labelled positions only, the head's product then the model's own loss ("unfused"); at labelled
positions, the product fused with the loss chunk by chunk ("labelled", qlorafx's default where exact).
It changes only which trainer class qlorafx builds (TokenCountingTrainer.head_only_where_loss and
fuse_head_with_loss), never the product's code."""

from __future__ import annotations

# mode -> (head_only_where_loss, fuse_head_with_loss)
HEAD_MODES = {"full": (False, False), "unfused": (True, False), "labelled": (True, True)}


def use_head(mode: str) -> None:
    """From now on, every trainer qlorafx builds in this process takes the head path ``mode``."""
    from qlorafx.train import trainers

    where_loss, fused = HEAD_MODES[mode]
    build = trainers._token_counting_trainer

    def trainer_class():
        cls = build()
        cls.head_only_where_loss, cls.fuse_head_with_loss = where_loss, fused
        return cls

    trainers._token_counting_trainer = trainer_class


def use_full_head() -> None:
    """From now on, every trainer qlorafx builds in this process applies the head at every position."""
    use_head("full")
