"""Packed rows under the real flash_attention_2 kernel train on what the examples alone train on.

    python bench/gpu_fa2_packing.py            # from the repository root, in its venv

Needs an NVIDIA GPU and the flash-attn package (pip install flash-attn --no-build-isolation). It trains
nothing: over the quickstart data (alpaca format, byte tokenizer, a random bf16 Llama with GQA), it
takes the Trainer's own target count and loss (get_batch_samples, compute_loss) for every batch of
  - the examples unpacked (pad_to_longest; flash attention unpads them from the attention mask),
  - the examples packed, as the packed collator hands them to flash attention (the micro-batch
    flattened into one row, with cu_seq_lens),
  - for contrast, packed rows as the collator handed them before issue 9 (several rows with
    restarting position_ids and nothing else), which transformers does not read as boundaries,
and checks that the first two agree: the same target count, the summed loss within bf16 rounding.
Without a GPU or flash-attn it says "SKIPPED" and why, and runs the same comparison with sdpa
(4D block masks) in float32 instead; on CPU, tests/train/test_packed_loss.py checks the
flash_attention_2 layout through transformers' flash integration over reference kernels.
Exit code 0 when every check held, 1 otherwise.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "recipes" / "data" / "quickstart.jsonl"
MODEL = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.1)
BF16_RELATIVE = 2e-3  # summed bf16 losses over ~10k targets from differently shaped batches


def recipe(run_dir: Path, packing: bool):
    from qlorafx.recipe.schema import Recipe

    return Recipe.model_validate({
        "model": {"loader": "from_config", "config": {"model_type": "llama"}},
        "data": {"datasets": [{"path": str(DATA), "format": "alpaca"}], "max_length": 1024, "val_size": 0,
                 "packing": packing, "train_on_inputs": True},
        "optimizer": {"name": "adamw"}, "training": {"micro_batch_size": 4, "max_steps": 1},
        "output_dir": str(run_dir),
    })


def old_layout(pad_token_id: int):
    """The packed collator before issue 9 under flash_attention_2: rows, restarting positions, no mask."""
    from qlorafx.data.collate import COLLATORS

    four_d = COLLATORS.get("packed")(pad_token_id, "sdpa")

    def collate(rows):
        batch = four_d(rows)
        del batch["attention_mask"]
        return batch

    return collate


def trainer_loss(model, tokenizer, packing: bool, attn: str, collator=None) -> tuple[float, int]:
    """(summed loss, target count) over every batch, as the Trainer computes them."""
    from qlorafx.data.build import prepare
    from qlorafx.data.collate import COLLATORS, collator_for
    from qlorafx.train.optimizers import OPTIMIZERS
    from qlorafx.train.trainers import TRAINERS

    with tempfile.TemporaryDirectory() as tmp:
        r = recipe(Path(tmp) / "run", packing)
        prepared = prepare(r, tokenizer, log=lambda *_: None)
        collator = collator or COLLATORS.get(collator_for(r, False))(tokenizer.pad_token_id, attn)
        trainer = TRAINERS.get("causal_lm")(r, model, tokenizer, prepared, collator=collator,
                                            optimizer=OPTIMIZERS.get("adamw")(r.optimizer), callbacks=[],
                                            run_dir=Path(tmp) / "run")
        total, targets = 0.0, 0
        with torch.no_grad():
            for batch in trainer.get_train_dataloader():
                _, count = trainer.get_batch_samples(iter([batch]), 1, trainer.args.device)
                loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
                total += float(loss) * int(count)
                targets += int(count)
    return total, targets


def main() -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    from qlorafx.model.byte_tokenizer import byte_tokenizer

    gpu = torch.cuda.is_available()
    try:
        import flash_attn  # noqa: F401
        has_flash = True
    except ImportError:
        has_flash = False
    if gpu and has_flash:
        attn, dtype, device, tolerance = "flash_attention_2", torch.bfloat16, "cuda", BF16_RELATIVE
    else:
        why = "no CUDA GPU" if not gpu else "the flash-attn package is not installed"
        print(f"SKIPPED flash_attention_2: {why}. Running the same check with sdpa (4D block masks) in float32; "
              "the flash_attention_2 layout is checked on CPU by tests/train/test_packed_loss.py")
        attn, dtype, device, tolerance = "sdpa", torch.float32, "cuda" if gpu else "cpu", 1e-5

    tokenizer = byte_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), **MODEL)
    model = LlamaForCausalLM._from_config(config, attn_implementation=attn, dtype=dtype).to(device).eval()

    alone, alone_targets = trainer_loss(model, tokenizer, packing=False, attn=attn)
    packed, packed_targets = trainer_loss(model, tokenizer, packing=True, attn=attn)
    print(f"{attn}, {dtype}, {device}")
    print(f"  unpacked: summed loss {alone:.3f} over {alone_targets} targets")
    print(f"  packed:   summed loss {packed:.3f} over {packed_targets} targets "
          f"(relative difference {abs(packed - alone) / alone:.2e}, allowed {tolerance:.0e})")
    ok = packed_targets == alone_targets and abs(packed - alone) <= tolerance * alone
    if attn == "flash_attention_2":
        leaky, leaky_targets = trainer_loss(model, tokenizer, packing=True, attn=attn,
                                            collator=old_layout(tokenizer.pad_token_id))
        print(f"  before issue 9 (rows + position_ids only): summed loss {leaky:.3f} over {leaky_targets} targets "
              f"(relative difference {abs(leaky - alone) / alone:.2e}: the examples saw each other)")
    print("OK: packed == unpacked" if ok else "FAILED: packed and unpacked differ")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
