"""Mean loss per trained token, and perplexity, over tokenized examples (no packing: each alone).

A causal LM's logit at position t predicts label t+1; an encoder-decoder model's decoder logit
at position t predicts label t (the model shifts the labels into its decoder inputs itself)."""

from __future__ import annotations

import math

from qlorafx.data.collate import COLLATORS, NUM_TOKENS, IGNORE_INDEX
from qlorafx.data.tokenize import Example
from qlorafx.model.architecture import is_encoder_decoder


def token_loss(model, tokenizer, examples: list[Example], batch_size: int = 8) -> dict[str, float]:
    import torch

    encoder_decoder = is_encoder_decoder(model.config)
    collate = COLLATORS.get("encoder_decoder" if encoder_decoder else "pad_to_longest")(tokenizer.pad_token_id)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = collate([e.as_features() for e in examples[start:start + batch_size]])
            batch.pop(NUM_TOKENS)
            if encoder_decoder:  # labels go in: the model builds its decoder inputs from them
                logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float()
                targets = batch["labels"].to(logits.device)
            else:
                labels = batch.pop("labels")
                logits = model(**{k: v.to(model.device) for k, v in batch.items()}).logits.float()[:, :-1]
                targets = labels[:, 1:].to(logits.device)
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum").item()
            count += int((targets != IGNORE_INDEX).sum())
    loss = total / count
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 50)), "eval_tokens": count}
