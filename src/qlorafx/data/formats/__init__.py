"""Dataset formats, by registry key. Each renders records for training and prompts for inference; see base.py.

Adding a format: its own file here, its class marked ``@register``, and one import line below.
"""

from qlorafx.data.formats import alpaca  # noqa: F401  (each import registers its format)
from qlorafx.data.formats import chat  # noqa: F401
from qlorafx.data.formats import chip2  # noqa: F401
from qlorafx.data.formats import completion  # noqa: F401
from qlorafx.data.formats import guanaco  # noqa: F401
from qlorafx.data.formats import hh_rlhf  # noqa: F401
from qlorafx.data.formats import longform  # noqa: F401
from qlorafx.data.formats import oasst  # noqa: F401
from qlorafx.data.formats import self_instruct  # noqa: F401
from qlorafx.data.formats import template  # noqa: F401
from qlorafx.data.formats import unnatural_instructions  # noqa: F401
from qlorafx.data.formats.base import FORMATS, PLACEHOLDER, Conversation, DatasetBase, Format, RecordError, Turn

__all__ = ["FORMATS", "PLACEHOLDER", "Conversation", "DatasetBase", "Format", "RecordError", "Turn"]
