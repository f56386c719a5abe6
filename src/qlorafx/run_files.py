"""The names in a run directory, in one place: its writers (model, train, finetune, report, eval) and
its one reader (report/run.py, used by generate, chat, eval, merge, serve and judge) name them here.

    recipe.yaml      the resolved recipe; `qlorafx train` on it reruns the run
    versions.json    package versions, device, the compute dtype 'auto' resolved to
    metrics.jsonl    one JSON object per log step and evaluation
    adapter/         the LoRA adapter in PEFT format (adapter_init/: its initial weights, for PiSSA-style inits)
    tokenizer/       the tokenizer the run trained with
    base_model/      only for loader 'from_config': the random base the adapter belongs to
    checkpoints/     resumable checkpoints while training
    run.json         written last: status 'finished' and the summary
    README.md        the model card; curves.png its plot
    tensorboard/, wandb/, wandb-run.json   what those metrics backends write
    .qlorafx-run     written when qlorafx creates the run directory: the mark of a folder it made
"""

RECIPE_FILE = "recipe.yaml"
VERSIONS_FILE = "versions.json"
METRICS_FILE = "metrics.jsonl"
ADAPTER_DIR = "adapter"
INITIAL_ADAPTER = "adapter_init"  # while a base-mutating init (pissa, olora) trains: its starting adapter
TOKENIZER_DIR = "tokenizer"
BASE_MODEL_DIR = "base_model"
CHECKPOINTS_DIR = "checkpoints"
FINISHED_MARKER = "run.json"
CARD_FILE = "README.md"
PLOT_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_RUN_FILE = "wandb-run.json"
RUN_MARKER = ".qlorafx-run"

# Every top-level name a run directory's writers use: what --overwrite may remove.
# tests/train/test_run_dir.py checks a real run against it.
RUN_ENTRIES = frozenset({
    RUN_MARKER, RECIPE_FILE, VERSIONS_FILE, METRICS_FILE, FINISHED_MARKER, ADAPTER_DIR, INITIAL_ADAPTER,
    TOKENIZER_DIR, BASE_MODEL_DIR, CHECKPOINTS_DIR, CARD_FILE, PLOT_FILE, TENSORBOARD_DIR, WANDB_DIR, WANDB_RUN_FILE,
})
