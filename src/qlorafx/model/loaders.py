"""Model loaders, by registry key: recipe -> tokenizer, then (recipe, tokenizer) -> quantized model.

'pretrained' loads a hub id or local folder. 'from_config' builds a model with random weights
from the recipe's model.config (seeded), saves it to ``<run dir>/base_model`` so the adapter
has a base to load onto later, then loads it back through the same path as 'pretrained', so
quantization is applied exactly as for a real checkpoint.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from qlorafx import processes
from qlorafx.errors import UserError
from qlorafx.model.architecture import auto_class, is_encoder_decoder
from qlorafx.registry import Registry
from qlorafx.run_files import BASE_MODEL_DIR

MODEL_LOADERS: Registry[Any] = Registry("model loader")
# The two loaders by name: code that depends on which one a recipe uses compares with these.
PRETRAINED, FROM_CONFIG = "pretrained", "from_config"


class ModelSourceError(UserError):
    """model.path or model.tokenizer does not give what it should; ``key`` names which."""

    def __init__(self, key: str, detail: str):
        self.key, self.detail = key, detail
        super().__init__(f"{key} {detail}")


class NotCachedLocally(UserError):
    """A hub model whose files are not on this machine, asked for without the network (validate)."""


def _unloadable(key: str, name: str, what: str, err: Exception):
    """An error naming the recipe key: a local folder that does not hold it, or a hub id the hub cannot give."""
    from qlorafx.hub import offline_reason

    detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    if Path(name).exists():
        reason = f"this local path does not hold a loadable {what} ({detail})"
    elif (offline := offline_reason()) is not None:
        reason = (f"it is not a local folder, and the hub is {offline} with no cached copy; "
                  "download it once with the hub reachable, or point it at a local folder")
    else:
        reason = (f"it is not a local folder, and the hub is unreachable or has no such model ({detail}); "
                  "check the id and the network, or point it at a local folder")
    return ModelSourceError(key, f"{name!r}: cannot load its {what}: {reason}")


def _check_hub(name: str) -> None:
    """Before loading a hub id: probe the hub once, so that an unreachable one fails in seconds."""
    if not Path(name).exists():
        from qlorafx.hub import offline_reason

        offline_reason()


def _load_tokenizer(name: str, recipe, key: str = "model.path"):
    from transformers import AutoTokenizer

    m = recipe.model
    _check_hub(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=m.revision, trust_remote_code=m.trust_remote_code)
    except (OSError, ValueError) as err:  # OSError: offline, unreachable, no such repo; ValueError: not a repo id
        raise _unloadable(key, name, "tokenizer", err) from None
    if tokenizer.pad_token is None:  # padding never carries loss or attention, so EOS is a safe pad
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def skeleton(config):
    """The model's module tree with no memory behind it: enough to check LoRA targets before loading.
    A config that transformers' config class accepts but its model code cannot build (an activation
    it does not know, say) is the user's input: a UserError, not a traceback."""
    import torch

    try:
        with torch.device("meta"):
            return auto_class(config).from_config(config)
    except (KeyError, ValueError, TypeError, IndexError, AssertionError, ZeroDivisionError) as err:
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(f"transformers cannot build a {config.model_type} model from its config "
                        f"({type(err).__name__}: {detail}); check model.config (or the config.json of model.path)") from None


def load_weights(path: str, recipe, compute_dtype: str, quant_config, revision: str | None = None):
    """The checkpoint at ``path`` (causal or encoder-decoder, as its config says), quantized as asked."""
    import torch
    from transformers import AutoConfig

    from qlorafx.model.quantize import weights_dtype

    m = recipe.model
    revision = revision or m.revision  # a finished run's base: the commit it trained on
    _check_hub(path)
    config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=m.trust_remote_code)
    return auto_class(config).from_pretrained(
        path,
        config=config,
        revision=revision,
        trust_remote_code=m.trust_remote_code,
        attn_implementation=m.attn_implementation,
        quantization_config=quant_config,
        dtype=getattr(torch, weights_dtype(recipe.quantization, compute_dtype)),
        # each process's copy on its own GPU: bitsandbytes quantizes where the weights land, and a 4-bit
        # model cannot be moved afterwards (accelerate refuses to train one on another device)
        device_map={"": processes.local_rank()} if torch.cuda.is_available() else None,
    )


class Pretrained:
    """A hub id or local folder; the tokenizer comes from model.tokenizer or the same place."""

    def tokenizer(self, recipe):
        key = "model.tokenizer" if recipe.model.tokenizer else "model.path"
        return _load_tokenizer(recipe.model.tokenizer or recipe.model.path, recipe, key)

    def config(self, recipe, tokenizer, local_only: bool = False):
        """``local_only``: a local folder or the hub cache only (NotCachedLocally otherwise); no network."""
        from transformers import AutoConfig

        m = recipe.model
        if not local_only:
            _check_hub(m.path)
        try:
            return AutoConfig.from_pretrained(m.path, revision=m.revision, trust_remote_code=m.trust_remote_code,
                                              local_files_only=local_only)
        except (OSError, ValueError) as err:
            if local_only and not Path(m.path).exists():
                raise NotCachedLocally(f"the model's config, data.max_length and the LoRA targets: {m.path} is a hub "
                                       "id whose config is not in the local cache, and validate stays offline; train "
                                       "downloads it and checks them") from None
            raise _unloadable("model.path", m.path, "config", err) from None

    def model(self, recipe, tokenizer, run_dir: Path, compute_dtype: str, quant_config):
        return load_weights(recipe.model.path, recipe, compute_dtype, quant_config)


class FromConfig:
    """Random weights from model.config (seeded); the byte tokenizer unless model.tokenizer names one."""

    def tokenizer(self, recipe):
        from qlorafx.model.byte_tokenizer import byte_tokenizer

        return _load_tokenizer(recipe.model.tokenizer, recipe, "model.tokenizer") if recipe.model.tokenizer else byte_tokenizer()

    def config(self, recipe, tokenizer):
        """transformers' config class built from model.config, checked (model/config_check.py); the
        tokenizer gives what the user left out: the vocabulary size and the special tokens' ids."""
        from qlorafx.model.config_check import ConfigProblem, ModelConfigError, build_config

        fields = dict(recipe.model.config)
        model_type = fields.pop("model_type")
        defaults = {} if tokenizer is None else {  # None: validate, checking the config without the hub's tokenizer
            "vocab_size": len(tokenizer),
            **{name: getattr(tokenizer, name) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}}
        vocab = fields.get("vocab_size")  # before the config is built: it warns of every special id past the end
        if tokenizer is not None and isinstance(vocab, int) and vocab < len(tokenizer):
            # the embedding could not hold the tokenizer's ids: train refused only once torch had built it
            raise ModelConfigError([ConfigProblem("model.config.vocab_size", (
                f"{vocab}, but the tokenizer has {len(tokenizer)} tokens (ids up to {len(tokenizer) - 1}); set it to "
                f"{len(tokenizer)} or more, or leave it out: it defaults to the tokenizer's"))])
        config = build_config(model_type, fields, defaults)
        if tokenizer is not None and is_encoder_decoder(config) and "decoder_start_token_id" not in fields:
            config.decoder_start_token_id = tokenizer.pad_token_id  # T5's convention: the decoder starts at pad
        return config

    def model(self, recipe, tokenizer, run_dir: Path, compute_dtype: str, quant_config):
        import torch
        from transformers.utils import logging as hf_logging

        torch.manual_seed(recipe.training.seed)
        base_dir = run_dir / BASE_MODEL_DIR
        scratch = not processes.is_main()  # under torchrun only rank 0 writes the run directory;
        if scratch:  # the others build theirs in a folder of their own: the same seed gives the same weights
            base_dir = Path(tempfile.mkdtemp(prefix="qlorafx-base-"))
        hf_logging.disable_progress_bar()  # a few-MB model: shard and weight progress bars are noise
        try:
            config = self.config(recipe, tokenizer)
            auto_class(config).from_config(config).save_pretrained(base_dir)
            tokenizer.save_pretrained(base_dir)
            return load_weights(str(base_dir), recipe, compute_dtype, quant_config)
        finally:
            hf_logging.enable_progress_bar()
            if scratch:  # loaded (a file mapped by safetensors stays readable once unlinked): nothing reads it again
                shutil.rmtree(base_dir)


MODEL_LOADERS.register(PRETRAINED)(Pretrained())
MODEL_LOADERS.register(FROM_CONFIG)(FromConfig())
