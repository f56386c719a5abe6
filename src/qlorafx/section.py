"""The base of every recipe section (dataset entries included): frozen, no unknown keys, plain numbers.

A leaf: the sections live next to what they configure (a format's options in its file), below recipe/."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

INT_BITS = 64  # torch, numpy and the trainer hold no larger integer


def _takes(annotation: Any, *kinds: type) -> bool:
    return any(a is k for a in (annotation, *typing.get_args(annotation)) for k in kinds)


class Section(BaseModel):
    # allow_inf_nan: .inf, .nan and 1e400 (which reads as inf) are no learning rate, epoch count or weight
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, v: Any, info) -> Any:
        """pydantic would read true/false as 1/0 in a number field; an integer past 64 bits fits nowhere."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(v, bool) and _takes(annotation, int, float) and not _takes(annotation, bool):
            raise ValueError(f"expected a number, not true or false; found {str(v).lower()}")
        if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() >= INT_BITS:
            raise ValueError(f"too large: an integer here fits in {INT_BITS} bits; found one of {v.bit_length()} bits")
        return v
