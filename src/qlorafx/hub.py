"""Can the Hugging Face hub be reached from here? One quick probe per process.

Without it, a machine with no network (a laptop on a train, a compute node behind a firewall)
waits through huggingface_hub's retries, about 50 s for each file, before any error. After a
failed probe qlorafx switches huggingface_hub (and transformers and datasets through it) to
offline mode: what is in the local cache still loads, anything else fails at once with a message
that says the hub is unreachable and what to do.
"""

from __future__ import annotations

import os

PROBE_TIMEOUT_S = 5.0
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # as huggingface_hub reads them
_probed: list[str | None] = []  # [reason] once probed: None when the hub answered


def offline_reason() -> str | None:
    """Why the hub cannot be used in this process, or None: an offline switch, or no answer to the probe
    (made on the first call only; afterwards huggingface_hub is in offline mode in this process)."""
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").upper() in {"1", "ON", "YES", "TRUE"}:
            return f"offline ({name}={os.environ[name]})"
    if not _probed:
        from huggingface_hub import constants

        _probed.append(_probe(constants.ENDPOINT))
        if _probed[0] is not None:
            constants.HF_HUB_OFFLINE = True  # read on every request by huggingface_hub and transformers
    return _probed[0]


def _probe(endpoint: str) -> str | None:
    """One HEAD request through huggingface_hub's own session (its proxies and certificates), no retries."""
    from huggingface_hub import get_session

    try:
        get_session().head(endpoint, timeout=PROBE_TIMEOUT_S)  # any HTTP answer means reachable
    except Exception as err:  # DNS, refused, timeout, TLS: every way a request can fail says "unreachable"
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        return f"unreachable ({endpoint}: {detail})"
    return None
