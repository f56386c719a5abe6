"""A tiny recipe that trains in seconds on CPU: 2-layer Llama, byte tokenizer, the quickstart data."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.conftest import REPO

QUICKSTART_DATA = REPO / "recipes" / "data" / "quickstart.jsonl"


def tiny_recipe(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(f"""\
        model:
          loader: from_config
          config: {{model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
                    num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 512,
                    initializer_range: 0.1}}
        lora: {{r: 16, alpha: 32, dropout: 0.0}}
        data:
          datasets: [{{path: {QUICKSTART_DATA}, format: alpaca}}]
          max_length: 320
          val_size: 8
        optimizer: {{name: adamw, lr: 2.0e-2}}
        scheduler: {{name: constant}}
        training: {{max_steps: 24, micro_batch_size: 4}}
        logging: {{every: 4, sample_max_new_tokens: 8}}
        output_dir: {tmp_path / "run"}
        """) + textwrap.dedent(extra))
    return path


def no_bos_tokenizer(folder: Path) -> Path:
    """The byte tokenizer adding no BOS (as Qwen2.5's and GPT-NeoX's add none), saved for model.tokenizer:
    an example's first token is then text, and trained when every token is."""
    from tokenizers import processors

    from qlorafx.model.byte_tokenizer import byte_tokenizer

    tokenizer = byte_tokenizer()
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
    tokenizer.save_pretrained(folder)
    return folder


def tiny_t5_recipe(tmp_path: Path, extra: str = "") -> Path:
    """The same data and LoRA on a 2+2-layer T5 (v1.1's gated-GELU feed-forward): prompt to the
    encoder, response to the decoder. No packing, which an encoder-decoder cannot use."""
    path = tmp_path / "tiny-t5.yaml"
    path.write_text(textwrap.dedent(f"""\
        model:
          loader: from_config
          config: {{model_type: t5, d_model: 64, d_ff: 128, d_kv: 32, num_layers: 2, num_decoder_layers: 2,
                    num_heads: 2, feed_forward_proj: gated-gelu}}
        lora: {{r: 16, alpha: 32, dropout: 0.0}}
        data:
          datasets: [{{path: {QUICKSTART_DATA}, format: alpaca}}]
          max_length: 512  # also what chat's history must fit: T5 has no position limit
          val_size: 8
          packing: false
        optimizer: {{name: adamw, lr: 2.0e-2}}
        scheduler: {{name: constant}}
        training: {{max_steps: 24, micro_batch_size: 4}}
        logging: {{every: 4, sample_max_new_tokens: 8, backends: [jsonl]}}
        output_dir: {tmp_path / "run"}
        """) + textwrap.dedent(extra))
    return path
