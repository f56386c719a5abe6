"""Dataset formats, by registry key. Each turns a record into conversations; see base.py."""

from qlorafx.data.formats.alpaca import Alpaca
from qlorafx.data.formats.base import Conversation, DatasetBase, Format, RecordError, Turn
from qlorafx.data.formats.chat import Chat
from qlorafx.data.formats.completion import Completion
from qlorafx.data.formats.guanaco import Guanaco
from qlorafx.data.formats.oasst import Oasst
from qlorafx.data.formats.self_instruct import SelfInstruct
from qlorafx.data.formats.template import Template
from qlorafx.registry import Registry

FORMATS: Registry[Format] = Registry("dataset format")
for _format in (Alpaca(), SelfInstruct(), Oasst(), Guanaco(), Chat(), Completion(), Template()):
    FORMATS.register(_format.name)(_format)

__all__ = ["FORMATS", "Conversation", "DatasetBase", "Format", "RecordError", "Turn"]
