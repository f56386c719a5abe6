"""The output head over every position, as before issue 15: what the bench's "full" rows and the
profile's --full-head compare the labelled-positions-only head against. It changes only which trainer
class qlorafx builds (TokenCountingTrainer.head_only_where_loss), never the product's code."""

from __future__ import annotations


def use_full_head() -> None:
    """From now on, every trainer qlorafx builds in this process applies the head at every position."""
    from qlorafx.train import trainers

    labelled_only = trainers._token_counting_trainer

    def full_head_trainer():
        cls = labelled_only()
        cls.head_only_where_loss = False
        return cls

    trainers._token_counting_trainer = full_head_trainer
