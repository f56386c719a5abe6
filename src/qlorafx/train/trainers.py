"""Training engines, by registry key. 'causal_lm' is transformers' Trainer, configured from the recipe;
despite its name it trains encoder-decoder (T5) models too, with the collator the pipeline picks.

No hand-written loop: the Trainer does batching, accumulation, clipping, the schedule and
logging; qlorafx gives it the optimizer class from the registry and its own callbacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from qlorafx import processes
from qlorafx.model.architecture import is_encoder_decoder
from qlorafx.model.quantize import resolve_compute_dtype
from qlorafx.registry import Registry
from qlorafx.train import checkpoints
from qlorafx.train.distributed import shard_on_cpu_too, sharding_arguments

TRAINERS: Registry[Callable[..., Any]] = Registry("trainer")


def training_arguments(recipe, run_dir: Path, evaluate_first: bool = False):
    import torch
    from transformers import TrainingArguments

    from qlorafx.train.schedulers import SCHEDULERS

    t, s = recipe.training, recipe.scheduler
    has_val = recipe.data.val_size > 0
    compute = resolve_compute_dtype(recipe.quantization.compute_dtype)
    gpu = torch.cuda.is_available()
    return TrainingArguments(
        output_dir=str(checkpoints.staging_dir(run_dir)),  # published whole by PublishCheckpoints
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.grad_accum,
        max_steps=t.max_steps or -1,
        num_train_epochs=t.epochs or 1.0,
        learning_rate=recipe.optimizer.lr,
        weight_decay=recipe.optimizer.weight_decay,
        max_grad_norm=t.max_grad_norm,
        lr_scheduler_type=SCHEDULERS.get(s.name),
        warmup_steps=s.warmup_steps if s.warmup_steps is not None else (s.warmup_ratio or 0.0),
        logging_steps=recipe.logging.every,
        logging_nan_inf_filter=False,  # a NaN loss must reach LossGuard, not be averaged away
        eval_strategy="steps" if (has_val and t.eval_every) else "no",
        eval_steps=t.eval_every,
        # the loss before training, measured inside train(): an evaluate() call before train()
        # marks the model as prepared, and accelerate then never wraps it for data-parallel training
        eval_on_start=evaluate_first,
        save_strategy="steps",
        save_steps=t.save_every,
        save_total_limit=None,  # qlorafx keeps training.keep_checkpoints of the published ones
        report_to="none",
        seed=t.seed,
        train_sampling_strategy=("group_by_length" if recipe.data.group_by_length
                                 else "random" if recipe.data.shuffle else "sequential"),
        data_seed=t.seed,
        use_cpu=not torch.cuda.is_available(),
        # data-parallel on CPU under torchrun needs gloo (nccl is GPU-only); a single process needs none
        ddp_backend="gloo" if not torch.cuda.is_available() and processes.world_size() > 1 else None,
        remove_unused_columns=False,
        include_num_input_tokens_seen="no",  # counted by TokenCountingTrainer, which knows about packing
        disable_tqdm=True,
        gradient_checkpointing=False,  # enabled on the model by the adapter step, before LoRA wraps it
        dataloader_num_workers=0,
        # autocast for what is not 4-bit (LoRA, norms) in the compute dtype, as qlora.py does on GPUs
        bf16=gpu and compute == "bfloat16",
        fp16=gpu and compute == "float16",
        **sharding_arguments(t.distributed if processes.world_size() > 1 else "ddp"),
    )


def _token_counting_trainer():
    import torch
    from transformers import Trainer

    from qlorafx.data.collate import IGNORE_INDEX, NUM_TOKENS, ROW_TOKENS
    from qlorafx.train import labelled_head

    class TokenCountingTrainer(Trainer):
        """Trainer that counts the non-padding tokens it trains on, on every process
        (state.num_input_tokens_seen), gives a batch with no target a loss of 0 rather than 0/0, and
        applies the output head and the loss at labelled positions only (train/labelled_head.py)."""

        # off only to compare against the full computation (tests, bench/gpu_head.py); it never
        # changes what is computed, only the time and memory it takes
        head_only_where_loss = True
        # the head's product and the loss fused, chunk by chunk, where that is exact (labelled_head.fused_path_reason);
        # off only to compare against the unfused head at labelled positions (tests, bench/profile_step.py --unfused)
        fuse_head_with_loss = True

        def create_accelerator_and_postprocess(self):
            super().create_accelerator_and_postprocess()
            shard_on_cpu_too(self)  # training.distributed fsdp shards on CPU processes too

        # the evaluation's loss summed over its target tokens, and their count (None outside evaluation_loop)
        _eval_sums: list[float] | None = None

        def evaluation_loop(self, *args, **kwargs):
            """The eval loss as the mean over every target token of the split, as `qlorafx eval` computes it:
            the Trainer's own is the mean of the batches' means, which weighs a target in a batch of few
            targets more (1.2090 logged against 1.2132 from `qlorafx eval` on the same split)."""
            self._eval_sums = [0.0, 0]
            try:
                output = super().evaluation_loop(*args, **kwargs)
                total, count = self._eval_sums
                prefix = kwargs.get("metric_key_prefix", args[4] if len(args) > 4 else "eval")
                if count and f"{prefix}_loss" in output.metrics:
                    output.metrics[f"{prefix}_loss"] = total / count
                return output
            finally:
                self._eval_sums = None

        def compute_loss(self, model, inputs, *args, **kwargs):
            row_tokens = inputs.pop(ROW_TOKENS, None)  # for the count below only: the model takes no such input
            if self._eval_sums is not None and not model.training and "labels" in inputs:
                labels = inputs["labels"]
                loss, outputs = self._compute_loss(model, inputs, *args, **{**kwargs, "return_outputs": True})
                encoder_decoder = is_encoder_decoder(self.accelerator.unwrap_model(model).config)
                # every process's rows, each once: the rows a process repeats to even out the last batch are
                # dropped, as the Trainer drops them from its own losses; gather_for_metrics drops them by
                # dataset row, so a flattened micro-batch is counted per dataset row, not as its one row
                rows = _row_sums(outputs.logits, labels, encoder_decoder, row_tokens)
                rows = self.accelerator.gather_for_metrics(rows)
                self._eval_sums[0] += float(rows[:, 0].sum())
                self._eval_sums[1] += int(rows[:, 1].sum())
                return (loss, outputs) if kwargs.get("return_outputs") else loss
            return self._compute_loss(model, inputs, *args, **kwargs)

        def _compute_loss(self, model, inputs, *args, **kwargs):
            tokens = inputs.pop(NUM_TOKENS, 0)
            if model.training:
                if self.args.world_size > 1:  # every process's tokens: tokens_per_s is the whole run's
                    tokens = int(self.accelerator.gather(torch.tensor([tokens], device=self.args.device)).sum())
                self.state.num_input_tokens_seen += tokens
            if kwargs.get("num_items_in_batch") is not None:
                # a batch whose labels are all masked sums to a loss of 0 over 0 targets: divided by 0 it
                # would be a NaN loss with NaN gradients, which the loss guard would report as a divergence
                count = kwargs["num_items_in_batch"]
                kwargs["num_items_in_batch"] = count.clamp(min=1) if torch.is_tensor(count) else max(count, 1)
            unwrapped = self.accelerator.unwrap_model(model)
            if ("labels" in inputs and is_encoder_decoder(unwrapped.config)
                    and not bool((inputs["labels"] != IGNORE_INDEX).any())):
                return self._no_target_loss(model, inputs, *args, **kwargs)
            return self._model_loss(model, unwrapped, inputs, *args, **kwargs)

        def _no_target_loss(self, model, inputs, *args, **kwargs):
            """An encoder-decoder batch with no target: a loss of 0 with zero gradients, as the causal path gives.
            T5 averages its own loss (CrossEntropyLoss, mean over the batch's targets) and takes no token count,
            so over none it is 0/0: a NaN loss whose backward puts NaN in every gradient. The forward still runs
            and the zero is taken through its logits, so the step backpropagates like any other (under DDP every
            process reduces the same gradients)."""
            return_outputs = args[0] if args else kwargs.get("return_outputs", False)
            kwargs = {**kwargs, "return_outputs": True}
            _, outputs = self._model_loss(model, self.accelerator.unwrap_model(model), inputs, *args[1:], **kwargs)
            outputs.loss = outputs.logits.sum() * 0.0  # logits are finite: 0 x each is 0, and so is its gradient
            return (outputs.loss, outputs) if return_outputs else outputs.loss

        def _model_loss(self, model, unwrapped, inputs, *args, **kwargs):
            """The model's own loss, through the Trainer, with the head at labelled positions where that is exact."""
            # compute_metrics / preprocess_logits_for_metrics read the logits beside the labels: the
            # shortcut's logits (one row per target) would not line up with them, so evaluation runs in full
            logits_read = not model.training and (self.compute_metrics is not None
                                                  or self.preprocess_logits_for_metrics is not None)
            if (not self.head_only_where_loss or "labels" not in inputs or self.label_smoother is not None
                    or self.compute_loss_func is not None or logits_read
                    or labelled_head.full_path_reason(unwrapped)):
                return super().compute_loss(model, inputs, *args, **kwargs)
            # float16 as the accelerator runs it: ACCELERATE_MIXED_PRECISION=fp16 sets it with args.fp16 False
            float16 = self.args.fp16 or self.accelerator.mixed_precision == "fp16"
            fused = self.fuse_head_with_loss and labelled_head.fused_path_reason(
                unwrapped, sharded=self.is_fsdp_enabled, float16=float16) is None
            with labelled_head.labelled_positions_only(unwrapped, inputs, fused=fused) as kept:
                return super().compute_loss(model, kept, *args, **kwargs)

    return TokenCountingTrainer


def _row_sums(logits, labels, encoder_decoder: bool, row_tokens: list[int] | None = None):
    """(rows, 2): each dataset row's loss summed over its targets, and their count. ``logits`` are the model's, at
    every position, or at the labelled ones only (train/labelled_head.py hands the head those, in row order).
    ``row_tokens``: the lengths of the dataset rows a flattened micro-batch's one row holds (data/collate.py)."""
    import torch

    from qlorafx.data.collate import IGNORE_INDEX

    # a causal LM's position t predicts label t+1; an encoder-decoder's decoder position t predicts label t
    targets = labels if encoder_decoder else torch.nn.functional.pad(labels[..., 1:], (0, 1), value=IGNORE_INDEX)
    keep = (targets != IGNORE_INDEX).to(logits.device)
    picked = logits if logits.dim() == 2 else logits[keep]
    losses = torch.nn.functional.cross_entropy(picked.float(), targets.to(logits.device)[keep], reduction="none")
    where = keep.nonzero()
    if row_tokens is None:
        row, count = where[:, 0], labels.shape[0]
    else:  # a position belongs to the dataset row it lies in (a row's first label is masked: none crosses over)
        ends = torch.tensor(row_tokens, device=logits.device).cumsum(0)
        row, count = torch.bucketize(where[:, -1], ends, right=True), len(row_tokens)
    rows = torch.zeros(count, 2, dtype=torch.float64, device=logits.device)
    rows[:, 0].index_add_(0, row, losses.double())
    rows[:, 1].index_add_(0, row, torch.ones_like(losses, dtype=torch.float64))
    return rows


@TRAINERS.register("causal_lm")
def causal_lm_trainer(recipe, model, tokenizer, prepared, collator, optimizer, callbacks, run_dir: Path,
                      evaluate_first: bool = False):
    from transformers import PrinterCallback, ProgressCallback

    trainer = _token_counting_trainer()(
        model=model,
        args=training_arguments(recipe, run_dir, evaluate_first),
        train_dataset=prepared.train,
        eval_dataset=prepared.val or None,
        data_collator=collator,
        processing_class=tokenizer,
        optimizer_cls_and_kwargs=optimizer,
        callbacks=callbacks,
    )
    for default in (PrinterCallback, ProgressCallback):  # our console backend replaces them
        trainer.remove_callback(default)
    if is_encoder_decoder(model.config):
        # T5's forward takes **kwargs, so the Trainer believes it normalises its loss by the token count
        # of the whole accumulated (and gathered) batch, as causal LMs do; it averages per micro-batch
        # instead. Left alone, the Trainer would skip the division by grad_accum and multiply by the
        # process count: the loss and the gradients grad_accum x processes times too large.
        trainer.model_accepts_loss_kwargs = False
    return trainer
