"""Library noise that tells a qlorafx user nothing actionable, silenced in one place.

Each entry says why it is safe to drop; anything not listed here still reaches the user.
"""

from __future__ import annotations

import logging
import warnings


def quiet_libraries() -> None:
    # bitsandbytes on AVX512-BF16 CPUs tries an optional hub-hosted kernel and warns when the
    # `kernels` package is absent; its built-in CPU kernel is used instead.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    # transformers 5 renamed gradient checkpointing APIs; peft and the Trainer still call the old
    # names internally. Deprecations inside libraries are their maintainers' business.
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*gradient_checkpointing.*deprecated")
    # bitsandbytes' paged optimizers run unpaged on CPU; the pipeline says so in one line itself.
    warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")
