"""qlorafx: declarative QLoRA finetuning from validated YAML recipes."""

__version__ = "0.1.0"
