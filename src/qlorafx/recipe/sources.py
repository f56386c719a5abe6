"""Where each value of the merged recipe came from: a file and line, or the command line."""

from __future__ import annotations

from pathlib import Path

from qlorafx.recipe.yaml_source import YamlSource

COMMAND_LINE = "command line"


class SourceMap:
    def __init__(self, layers: list[YamlSource]):
        self.layers = layers
        self.overridden: set[str] = set()

    def _owner(self, dotted: str) -> tuple[YamlSource | None, str | None]:
        """The layer that set this path (latest first) and the key it set it under."""
        parts = dotted.split(".") if dotted else []
        prefixes = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
        if any(p in self.overridden for p in prefixes):
            return None, COMMAND_LINE
        for layer in reversed(self.layers):
            if dotted in layer.lines:
                return layer, dotted
            # a later file that set a list or scalar above this path replaced everything below it
            for prefix in prefixes[1:]:
                if prefix in layer.atomic:
                    return layer, prefix
        return None, None

    def where(self, dotted: str) -> str | None:
        """'file:line' or 'command line'; for a missing key, where its nearest parent was set."""
        parts = dotted.split(".") if dotted else []
        for i in range(len(parts), 0, -1):
            layer, key = self._owner(".".join(parts[:i]))
            if key == COMMAND_LINE:
                return COMMAND_LINE
            if layer is not None:
                return layer.where(key)
        return str(self.layers[-1].path) if self.layers else None

    def base_dir(self, dotted: str) -> Path:
        """The folder a relative path at this key is relative to: its file's, or the current one."""
        layer, key = self._owner(dotted)
        return layer.path.parent if layer is not None else Path.cwd()
