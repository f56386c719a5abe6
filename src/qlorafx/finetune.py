"""Recipe -> trained adapter and a run directory: the whole finetune, top to bottom.

The top of the package: it uses data, model, train, infer (the sample generation) and report;
nothing in qlorafx imports it but the CLI.

check the output dir (or the checkpoint to resume) -> tokenizer -> data -> run dir -> quantized
model -> LoRA -> trainer -> eval before -> train (checkpoints, signals, loss guards) -> eval after
-> save -> sample generation -> report.
Everything that can fail on the user's input fails before the first weight loads. Under
torchrun only rank 0 writes the run directory.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qlorafx import processes
from qlorafx.data.build import prepare as prepare_data
from qlorafx.data.collate import COLLATORS, collator_for
from qlorafx.data import report as data_report
from qlorafx.infer.generate import generate_text
from qlorafx.interrupts import stop_if_interrupted
from qlorafx.model import base_identity
from qlorafx.model.adapter import add_lora, check_lora, initialize_from_data, save_adapter
from qlorafx.model.architecture import is_encoder_decoder
from qlorafx.model.config_check import ModelConfigError, recipe_fits_config
from qlorafx.model.loaders import MODEL_LOADERS, skeleton
from qlorafx.model.packed_attention import use_for_packed_rows
from qlorafx.model.quantize import keep_weights_trainable_on_cpu, quantization_config, resolve_compute_dtype
from qlorafx.recipe.schema import Recipe
from qlorafx.report import write_report
from qlorafx.report.run import base_of, read_metrics
from qlorafx.run_files import (ADAPTER_DIR, BASE_MODEL_DIR, FINISHED_MARKER, INITIAL_ADAPTER, METRICS_FILE, RECIPE_FILE,
                               TENSORBOARD_DIR, TOKENIZER_DIR, VERSIONS_FILE, WANDB_DIR)
from qlorafx.train import checkpoints
from qlorafx.train import run_dir as rundir
from qlorafx.train.backends import RunInfo, require_packages, tracking
from qlorafx.train.callbacks import MetricsCallback
from qlorafx.train.distributed import check_shardable, full_trainable_state, sharding_report
from qlorafx.train.lifecycle import GracefulStop, LossGuard, PublishCheckpoints
from qlorafx.train.optimizers import OPTIMIZERS
from qlorafx.train.quiet import quiet_libraries
from qlorafx.train.trainers import TRAINERS


@dataclass
class Summary:
    run_dir: str
    steps: int
    eval_loss_before: float | None
    eval_loss_after: float | None
    train_loss_last: float | None
    wall_seconds: float
    trainable_params: int
    total_params: int
    sample_prompt: str | None = None
    sample_output: str | None = None
    sample_error: str | None = None  # why there is no sample, when generating one failed
    data: dict | None = None  # qlorafx.data.report.summary: counts per dataset and in total
    base: dict | None = None  # what the base is, by content (model/base_identity.py): a copied run still finds it


@dataclass
class Result:
    summary: Summary
    model: Any  # the trained peft model, still in memory
    tokenizer: Any


class Interrupted(Exception):
    """Stopped by SIGTERM or Ctrl-C after saving a checkpoint; the message says how to resume."""


def _eval_loss_at_end(trainer) -> float:
    """The loss on the validation split after the last step: the Trainer's own evaluation at that step when
    eval_every made one (evaluating again would log the same evaluation twice), else one now."""
    step = trainer.state.global_step
    done = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h and h.get("step") == step]
    return done[-1] if done and step > 0 else trainer.evaluate()["eval_loss"]


def _eval_loss_at_start(records: list[dict]) -> float | None:
    return next((r["eval_loss"] for r in records if r.get("step") == 0 and "eval_loss" in r), None)


def sample(summary: Summary, model, tokenizer, examples: list, max_new_tokens: int, log=print) -> None:
    """The model's continuation of the first validation prompt, into the summary. A prompt is what
    precedes an example's first trained token; an example trained from its first token on (a
    tokenizer with no BOS and train_on_inputs, or the completion format) has none and is passed
    over. A sample is a courtesy: when it fails, the run is finished and saved all the same, and the
    failure is logged and recorded, never raised."""
    prompt_ids = next((e.prompt_ids for e in examples if e.prompt_ids), None)
    if prompt_ids is None:
        log("sample: none, no validation example has a prompt before its first trained token")
        return
    try:
        summary.sample_output = generate_text(model, tokenizer, prompt_ids, max_new_tokens)
        summary.sample_prompt = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    except Exception as err:  # noqa: BLE001: whatever failed, the trained adapter is saved and the run finished
        summary.sample_error = f"{type(err).__name__}: {err}"
        log(f"warning: the sample generation failed ({summary.sample_error}); the run is finished and saved")


def train(recipe: Recipe, recipe_yaml: str, overwrite: bool = False, log=print, callbacks: tuple = (),
          resume: str | bool = False, force: bool = False) -> Result:
    """``resume``: True for the newest checkpoint in output_dir, or a checkpoint's path.
    ``callbacks``: extra transformers TrainerCallbacks (they see the model and optimizer each step)."""
    from transformers import set_seed

    started = time.perf_counter()
    quiet_libraries()
    run_dir = Path(recipe.output_dir)
    main = processes.is_main()
    if resume:
        checkpoint = checkpoints.resume_point(run_dir, resume if isinstance(resume, str) else None, force, recipe_yaml,
                                              processes.world_size())
        log(f"resuming from {checkpoint} (step {checkpoints.step_of(checkpoint)})")
    else:
        checkpoint = None
        if main:  # under torchrun rank 0 may have made the run directory already
            rundir.prepare(run_dir, overwrite, dry_run=True)
    require_packages(recipe.logging.backends)

    loader = MODEL_LOADERS.get(recipe.model.loader)
    tokenizer = loader.tokenizer(recipe)
    config = loader.config(recipe, tokenizer)
    refused = recipe_fits_config(recipe, config)  # what validate says too, from the config alone
    if refused:
        raise ModelConfigError(refused)
    encoder_decoder = is_encoder_decoder(config)
    data = prepare_data(recipe, tokenizer, log, encoder_decoder)
    data_summary = data_report.summary(data, recipe)
    log(data_report.one_line(data_summary, recipe.data.max_length))

    shape = skeleton(config)
    check_lora(shape, recipe)
    if recipe.training.distributed == "fsdp" and processes.world_size() > 1:
        check_shardable(shape)  # before the weights load
    stop_if_interrupted()  # a Ctrl-C swallowed while loading libraries or data: stop before writing anything

    compute_dtype = resolve_compute_dtype(recipe.quantization.compute_dtype)
    if main and checkpoint is None:
        rundir.prepare(run_dir, overwrite)
        (run_dir / RECIPE_FILE).write_text(recipe_yaml, encoding="utf-8")
        rundir.write_json(run_dir / VERSIONS_FILE, rundir.versions({"compute_dtype": compute_dtype}))
    elif main:
        checkpoints.clear_staging(run_dir)  # a checkpoint that was being written when the run stopped
        checkpoints.drop_metrics_after(run_dir, checkpoints.step_of(checkpoint))

    set_seed(recipe.training.seed)
    model = loader.model(recipe, tokenizer, run_dir, compute_dtype, quantization_config(recipe.quantization, compute_dtype))
    keep_weights_trainable_on_cpu(model)
    attention = use_for_packed_rows(model, recipe, log)  # the implementation the collator batches for
    stop_if_interrupted()  # the weights can take minutes to load; a swallowed Ctrl-C stops before training
    model = add_lora(model, recipe, run_dir if main else None)
    if main:  # what the loader (a from_config base) and the adapter's set-up wrote
        rundir.record_written(run_dir, BASE_MODEL_DIR, INITIAL_ADAPTER)
    trainable, total = model.get_nb_trainable_parameters()
    q = recipe.quantization
    kind = f"{q.bits}-bit {q.quant_type}{' double-quant' if q.double_quant else ''}" if q.bits == 4 else f"{q.bits}-bit"
    log(f"model: {kind} base, compute {compute_dtype}; "
        f"LoRA trains {trainable:,} of {total:,} parameters ({trainable / total:.2%})")
    if recipe.optimizer.name.startswith("paged_") and compute_dtype == "float32" and not model.device.type == "cuda":
        log(f"optimizer: {recipe.optimizer.name} runs unpaged on CPU (paging moves GPU memory)")

    earlier = checkpoints.wall_seconds(checkpoint) if checkpoint else 0.0  # a resumed run's time before this session

    def clock() -> float:
        return earlier + time.perf_counter() - started

    publish = PublishCheckpoints(run_dir, recipe_yaml, recipe.training.keep_checkpoints, clock)
    stop, guard = GracefulStop(), LossGuard(log)
    # the backends stay open past training: they record the evaluation after it too
    info = RunInfo(recipe, recipe_yaml, run_dir, resumed=checkpoint is not None)
    # the backends' folders recorded as the run's own once they are closed, whether the run finished or failed
    with (rundir.recording(run_dir if main else None, TENSORBOARD_DIR, WANDB_DIR),
          tracking(recipe.logging.backends if main else [], info) as backends):
        trainer = TRAINERS.get(recipe.training.trainer)(
            recipe, model, tokenizer, data,
            collator=COLLATORS.get(collator_for(recipe, encoder_decoder))(
                tokenizer.pad_token_id, attention),
            optimizer=OPTIMIZERS.get(recipe.optimizer.name)(recipe.optimizer),
            callbacks=[MetricsCallback(backends), publish, stop, guard, sharding_report(log), *callbacks],
            run_dir=run_dir,
            evaluate_first=bool(data.val) and checkpoint is None,
        )
        initialize_from_data(model, recipe, trainer.get_train_dataloader)  # EVA; before the optimizer exists
        stop_if_interrupted()
        with stop.installed():
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        metrics = run_dir / METRICS_FILE  # resumed: the first run logged the evaluation before training there
        logged = trainer.state.log_history if checkpoint is None else read_metrics(metrics) if metrics.is_file() else []
        before = _eval_loss_at_start(logged)
        if guard.bad_step is not None:
            raise guard.diagnosis(run_dir)
        if stop.signal is not None:
            raise Interrupted(
                f"{stop.signal} at step {stop.step}: checkpoint saved to {publish.latest}; "
                f"resume with: qlorafx train RECIPE --resume (the same recipe and overrides)"
            )
        after = _eval_loss_at_end(trainer) if data.val else None

    train_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = Summary(
        run_dir=str(run_dir), steps=trainer.state.global_step, eval_loss_before=before, eval_loss_after=after,
        train_loss_last=train_losses[-1] if train_losses else None,
        wall_seconds=round(clock(), 1), trainable_params=trainable, total_params=total,
        data=data_summary,
    )
    # a sharded model's adapter is gathered, and its sample generated, by every process together
    sharded = trainer.is_fsdp_enabled
    adapter_state = full_trainable_state(model) if sharded else None
    if recipe.logging.sample_max_new_tokens and data.val_examples and (main or sharded):
        sample(summary, model, tokenizer, data.val_examples, recipe.logging.sample_max_new_tokens, log)
    if not main:
        return Result(summary, model, tokenizer)
    save_adapter(model, recipe, run_dir, adapter_state)
    tokenizer.save_pretrained(run_dir / TOKENIZER_DIR)
    # recorded as soon as written: a run stopped while its report is made (Ctrl-C in the plot) is still replaceable
    rundir.record_written(run_dir, ADAPTER_DIR, INITIAL_ADAPTER, TOKENIZER_DIR)
    summary.base = base_identity.identity(base_of(run_dir, recipe), recipe.model.revision)
    rundir.write_json(run_dir / FINISHED_MARKER, {"status": "finished", **asdict(summary)})
    report = write_report(run_dir)
    log(f"report: {report.card} (plot: {report.plot or 'none, no metrics.jsonl'})")
    return Result(summary, model, tokenizer)
