"""The hostile inputs: one row per case, each run through the real `qlorafx` command by test_hostile.py.

Every case runs in a folder of its own that holds ``recipe.yaml`` (the case's recipe), a valid
``data/train.jsonl``, a fake finished run in ``finished-run/`` (where the `train` cases point
output_dir; the recipes' own output_dir, ``new-run``, does not exist), a folder that is no run
(``not-a-run/``) and the case's extra files, links and named pipes.
``@DIR@`` in any text (recipe, files, overrides, expected substrings) stands for that folder.
Each case must end with exit code 2 and one short report holding every expected substring, with
nothing executed and nothing written anywhere in the folder. A case marked ``xfail`` is a bug
in a module this suite may not change; it names the bug, and fails the suite once fixed
(strict), so that the mark comes off.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

# Lines: 1 description, 2 model, 3 loader, 4 config, 5 lora, 6 data, 7 datasets, 8 the dataset
# entry, 9 output_dir; `extra` sections start at line 10.
BASE = """\
description: a hostile-input case
model:
  loader: from_config
  config: {{model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2}}
lora: {{r: 8, alpha: 16}}
data:
  datasets:
    - {dataset}
output_dir: new-run
"""
TRAIN_DATA = (json.dumps({"instruction": "Say hi.", "input": "", "output": "Hi."}) + "\n"
              + json.dumps({"instruction": "Add.", "input": "1 + 1", "output": "2"}) + "\n")
# A passwd-like file with a secret on every line after the first: copied in as data, only a short
# excerpt of its first line may appear in a report.
SECRET_LINES = [
    "root:x:0:0:root:/root:/bin/bash",
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
    "alice:x:1000:1000:Alice Example,,,:/home/alice:/bin/bash SECRET-LINE-3",
    "svc:x:999:999:token=SECRET-LINE-4:/var/lib/svc:/bin/false",
]
SECRET_FILE = "\n".join(SECRET_LINES) + "\n"
LONG_SECRET = "SECRET-HEAD-" + "k" * 200 + "-SECRET-TAIL"  # one CSV header field: only its start may show
PWNED = "@DIR@/PWNED"  # what a Python-object payload would create


def recipe(dataset: str = "{path: data/train.jsonl, format: alpaca}", extra: str = "") -> str:
    return BASE.format(dataset=dataset) + extra


def data_recipe(path: str, fmt: str = "alpaca", options: str = "") -> str:
    return recipe(f"{{path: {path}, format: {fmt}{', ' + options if options else ''}}}")


def noise(size: int, seed: int) -> bytes:
    """Random bytes that are not UTF-8 (they start with a byte UTF-8 never uses)."""
    return b"\xff" + random.Random(seed).randbytes(size)


def bomb(levels: int = 9) -> str:
    """Billion laughs: each level's list holds the previous one nine times (9**9 strings expanded)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    id: str
    expect: tuple[str, ...]  # substrings of stderr, each naming what is wrong and where
    recipe: str | bytes = recipe()
    overrides: tuple[str, ...] = ()
    files: dict[str, str | bytes] = field(default_factory=dict)  # extra files, relative to the case folder
    links: dict[str, str] = field(default_factory=dict)  # symbolic links made there: name -> target
    fifos: tuple[str, ...] = ()  # named pipes made there (reading one blocks until a writer comes)
    command: str = "validate"
    flags: tuple[str, ...] = ()
    # text that must not appear in the output; "/etc/passwd": its lines after the first (whose start may
    # show as a short excerpt)
    absent: tuple[str, ...] = ()
    max_lines: int = 2  # the report's lines: 'error: ...' and its indented problem lines
    xfail: str | None = None  # a known bug in a module outside this suite's reach

    @property
    def slow(self) -> bool:
        """Imports torch: `train` past the recipe checks, and `preprocess` (the tokenizer)."""
        return self.command in ("train", "preprocess") and not self.id.startswith("fast-")


R = "@DIR@/recipe.yaml"
FINISHED = "output_dir=finished-run"  # the fake finished run: what train must leave untouched
# An encoder-decoder (packing stays at its default, true, which such a model cannot use)
T5_RECIPE = recipe().replace(
    "{model_type: llama, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 2}",
    "{model_type: t5, d_model: 64, d_ff: 128, d_kv: 32, num_layers: 2, num_heads: 2}")

WRONG_TYPES = """\
description: {text: hi}
model:
  loader: from_config
  config: [model_type, llama]
  trust_remote_code: maybe
quantization: {bits: 3}
lora: {r: sixteen, target_modules: 5}
data:
  datasets:
    - 5
  packing: often
optimizer: {lr: fast}
scheduler: {warmup_steps: 1.5}
training: {max_steps: true}
logging: {backends: console, wandb: {tags: x}}
output_dir: [finished-run]
"""
UNKNOWN_KEYS = """\
description: a hostile-input case
modle: {path: x}
model:
  loader: from_config
  config: {model_type: llama, colour: red}
lora: {rank: 8}
data:
  datasets:
    - {path: data/train.jsonl, fromat: alpaca, columns: {instr: question}}
  max_len: 64
logging: {wandb: {projetc: x}}
output_dir: new-run
"""
CHAT_DATA = ('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n')
OASST_TREE = json.dumps({"message_tree_id": "t1", "tree_state": "ready_for_export",
                         "prompt": {"role": "prompter", "text": "Hi", "lang": "en", "replies": [
                             {"role": "assistant", "text": "Hello", "lang": "en", "rank": 0, "replies": []}]}}) + "\n"
BAD_JSONL = '{"instruction": "a", "output": "b"}\n{"instruction": oops}\n'

CASES = [
    # --- the recipe file itself -------------------------------------------------------------------
    Case("empty-recipe", (f"<recipe> ({R}): the file is empty",), recipe=""),
    Case("binary-recipe", (f"<recipe> ({R}): not UTF-8 text (byte 0)",), recipe=noise(4096, 1)),
    Case("utf16-recipe", (f"<recipe> ({R}): not UTF-8 text (byte 0); save the recipe as UTF-8",),
         recipe=recipe().encode("utf-16")),
    Case("recipe-is-dev-zero", ("<recipe> (/dev/zero): not a file",), links={"recipe.yaml": "/dev/zero"}),
    Case("broken-yaml", (f"<recipe> ({R}:3): not valid YAML",), recipe="model:\n  loader: [from_config\n"),
    Case("oversized-recipe", (f"<recipe> ({R}): file is 1,100,", "bytes; a recipe is at most 1,000,000"),
         recipe=recipe(extra="notes: " + "x" * 1_100_000 + "\n")),
    Case("billion-laughs", (f"<recipe> ({R}): more than 100,000 YAML nodes",), recipe=bomb() + recipe()),
    Case("deep-nesting", (f"<recipe> ({R}): more than 100,000 YAML nodes",),
         recipe=recipe(extra="notes: " + "[" * 20000 + "]" * 20000 + "\n")),
    Case("python-object-apply", (f"<recipe> ({R}:1): YAML tag tag:yaml.org,2002:python/object/apply:os.system "
                                 "is not allowed",),
         recipe=f'description: !!python/object/apply:os.system ["touch {PWNED}"]\n'),
    Case("python-object-new", (f"({R}:5): YAML tag tag:yaml.org,2002:python/object/new:subprocess.Popen",),
         recipe=recipe().replace("lora: {r: 8, alpha: 16}", f'lora: !!python/object/new:subprocess.Popen [["touch", "{PWNED}"]]')),
    Case("python-name", (f"({R}:10): YAML tag tag:yaml.org,2002:python/name:os.system is not allowed",),
         recipe=recipe(extra="optimizer: {name: !!python/name:os.system }\n")),
    Case("python-module", (f"({R}:10): YAML tag tag:yaml.org,2002:python/module:os is not allowed",),
         recipe=recipe(extra="optimizer: !!python/module:os\n")),
    Case("python-tag-in-a-fragment", ("(@DIR@/frag.yaml:2): YAML tag tag:yaml.org,2002:python/object/apply:os.system",),
         recipe="extends: frag.yaml\n" + recipe(),
         files={"frag.yaml": f'optimizer:\n  name: !!python/object/apply:os.system ["touch {PWNED}"]\n'}),
    Case("number-of-5000-digits", (f"lora.r ({R}:5): a number of 5,000 digits: too long to read",),
         recipe=recipe().replace("r: 8,", f"r: {'9' * 5000},")),
    Case("null-byte-in-a-path", (f"data.datasets.0.path ({R}:8): holds a NUL character",),
         recipe=recipe('{path: "data/train\\0.jsonl", format: alpaca}')),

    # --- extends -----------------------------------------------------------------------------------
    Case("extends-cycle", ("extends (@DIR@/b.yaml:1): extends forms a cycle: @DIR@/recipe.yaml -> @DIR@/b.yaml -> "
                           "@DIR@/recipe.yaml",),
         recipe="extends: b.yaml\n" + recipe(), files={"b.yaml": "extends: recipe.yaml\nlora: {r: 4}\n"}),
    Case("extends-missing-file", (f"extends ({R}:1): extends names @DIR@/nope.yaml, which does not exist",),
         recipe="extends: nope.yaml\n" + recipe()),
    Case("extends-escapes-to-etc-passwd", ("<recipe> (/etc/passwd): expected a mapping of sections at the top",),
         recipe="extends: ../../../../../../../../../../etc/passwd\n" + recipe(), absent=("/etc/passwd",)),
    Case("extends-a-folder", (f"extends ({R}:1): extends names @DIR@/data, which is not a file",),
         recipe="extends: [data]\n" + recipe()),
    Case("override-cannot-add-extends", ("extends (command line): unknown key",), overrides=("extends=/etc/passwd",)),

    # --- wrong types at every section; unknown keys at every depth ----------------------------------
    Case("wrong-types-in-every-section", (
        f"description ({R}:1): input should be a valid string; found a mapping",
        f"model.config ({R}:4): input should be a valid dictionary; found a list",
        f"model.trust_remote_code ({R}:5): input should be a valid boolean",
        f"quantization.bits ({R}:6): input should be 4, 8 or 16; found 3",
        f"lora.r ({R}:7): input should be a valid integer",
        f"lora.target_modules ({R}:7): input should be a valid list or input should be a valid string; found 5",
        f"data.datasets.0 ({R}:10): expected a dataset entry, a mapping",
        f"data.packing ({R}:11): input should be a valid boolean",
        f"optimizer.lr ({R}:12): input should be a valid number",
        f"scheduler.warmup_steps ({R}:13): input should be a valid integer, got a number with a fractional part",
        f"training.max_steps ({R}:14): expected a number, not true or false",
        f"logging.backends ({R}:15): input should be a valid list; found 'console'",
        f"logging.wandb.tags ({R}:15): input should be a valid list; found 'x'",
        f"output_dir ({R}:16): input should be a valid string; found a list",
    ), recipe=WRONG_TYPES, max_lines=15),
    Case("wrong-types-by-override", (
        "model (command line): input should be a valid dictionary", "found 3",
        "quantization (command line): input should be a valid dictionary", "found 'fp4'",
        "data.datasets (command line): input should be a valid list; found 'x'",
        "lora.r (command line): expected a number, not true or false; found true",
    ), overrides=("model=3", "quantization=fp4", "data.datasets=x", "lora.r=yes"), max_lines=5,
         absent=("instance of", "Section", "True")),  # YAML's words, not Python's or the schema's class names
    Case("lora-targets-bad-regex", ("lora.target_modules (command line): not a valid regex",),
         overrides=("lora.target_modules=.*(q_proj",)),
    Case("empty-output-dir", ("output_dir (command line): string should have at least 1 character",),
         overrides=("output_dir=",)),
    Case("unknown-keys-at-every-depth", (
        f"modle ({R}:2): unknown key; did you mean 'model'?",
        f"lora.rank ({R}:6): unknown key",
        f"data.datasets.0.fromat ({R}:9): unknown key; did you mean 'format'?",
        f"data.datasets.0.columns.instr ({R}:9): input should be 'instruction', 'input' or 'output'",
        f"data.max_len ({R}:10): unknown key; did you mean 'max_length'?",
        f"logging.wandb.projetc ({R}:11): unknown key; did you mean 'project'?",
    ), recipe=UNKNOWN_KEYS, max_lines=7, absent=("colour",)),  # model.config is free-form
    Case("unknown-format-option", (f"data.datasets.0.chat_templat ({R}:8): unknown key; did you mean 'chat_template'?",),
         recipe=data_recipe("data/chat.jsonl", "chat", "chat_templat: chatml"), files={"data/chat.jsonl": CHAT_DATA}),
    Case("unknown-key-in-a-fragment", ("optimizer.nmae (@DIR@/frag.yaml:2): unknown key; did you mean 'name'?",),
         recipe="extends: frag.yaml\n" + recipe(), files={"frag.yaml": "optimizer:\n  nmae: adamw\n"}),

    # --- huge, infinite, negative and zero numbers --------------------------------------------------
    Case("infinite-lr", (f"optimizer.lr ({R}:10): input should be a finite number; found .inf",),
         recipe=recipe(extra="optimizer: {lr: .inf}\n")),
    Case("10**100-micro-batch", (f"training.micro_batch_size ({R}:11): too large: an integer here fits in 64 bits",),
         recipe=recipe(extra=f"training:\n  micro_batch_size: {10 ** 100}\n")),
    Case("huge-and-infinite-numbers", (
        "lora.alpha (command line): input should be a finite number; found '1e400'",
        "data.val_size (command line): input should be a finite number; found .inf",
        "training.epochs (command line): input should be a finite number; found .nan",
        "lora.r (command line): too large: an integer here fits in 64 bits",
    ), overrides=("lora.alpha=1e400", "data.val_size=1.0e+400", "training.epochs=.nan", "lora.r=1" + "0" * 100),
         max_lines=5),
    Case("negative-and-zero-numbers", (
        "optimizer.lr (command line): input should be greater than 0; found -0.0001",
        "lora.r (command line): input should be greater than 0; found 0",
        "training.seed (command line): input should be greater than or equal to 0; found -1",
        "data.max_length (command line): input should be greater than 0; found -1",
        "data.datasets.0.max_examples (command line): input should be greater than 0; found 0",
        "training.micro_batch_size (command line): input should be greater than 0; found 0",
    ), overrides=("optimizer.lr=-1.0e-4", "lora.r=0", "training.seed=-1", "data.max_length=-1",
                  "data.datasets.0.max_examples=0", "training.micro_batch_size=0"), max_lines=7),
    Case("infinite-dataset-weight", ("data.datasets.0.weight (command line): input should be a finite number",),
         overrides=("data.datasets.0.weight=.inf",)),

    # --- components named by import path: the registries refuse them, listing their keys -------------
    Case("optimizer-import-path", (f"optimizer.name ({R}:10): unknown optimizer 'torch.optim.AdamW': expected one of "
                                   "adamw, ",),
         recipe=recipe(extra="optimizer: {name: torch.optim.AdamW}\n")),
    Case("format-import-path", (f"data.datasets.0.format ({R}:8): unknown dataset format 'mypkg.formats:Custom': "
                                "expected one of alpaca, chat",),
         recipe=data_recipe("data/train.jsonl", "mypkg.formats:Custom")),
    Case("loader-import-path", ("model.loader (command line): unknown model loader 'os.system': expected one of "
                                "from_config, pretrained",), overrides=("model.loader=os.system",)),
    Case("import-paths-for-other-registries", (
        "scheduler.name (command line): unknown scheduler 'transformers.get_cosine_schedule_with_warmup': expected "
        "one of constant",
        "training.trainer (command line): unknown trainer 'trl.SFTTrainer': expected one of causal_lm",
        "logging.backends.0 (command line): unknown metrics backend 'wandb.sdk:Run': expected one of console, jsonl",
    ), overrides=("scheduler.name=transformers.get_cosine_schedule_with_warmup", "training.trainer=trl.SFTTrainer",
                  "logging.backends=[wandb.sdk:Run]"), max_lines=4),
    Case("chat-template-import-path", ("data.datasets.0.chat_template (command line): unknown chat template "
                                       "'jinja2.Template': expected one of chatml",),
         recipe=data_recipe("data/chat.jsonl", "chat"), overrides=("data.datasets.0.chat_template=jinja2.Template",),
         files={"data/chat.jsonl": CHAT_DATA}),

    # --- bad overrides --------------------------------------------------------------------------------
    Case("override-without-equals", ("lora.r (command line): override 'lora.r' is not key.path=value",),
         overrides=("lora.r",)),
    Case("override-list-split-by-the-shell", (
        "lora.target_modules (command line): '[q_proj,' starts a YAML list that does not close",
        "quote the whole override for the shell when it holds spaces: 'key=[q_proj, v_proj]'",
        "v_proj] (command line): override 'v_proj]' is not key.path=value"),
         overrides=("lora.target_modules=[q_proj,", "v_proj]"), max_lines=3, absent=("regex",)),
    Case("override-index-past-end", ("data.datasets.5.path (command line): index 5 is past the end of the list "
                                     "(1 item)",), overrides=("data.datasets.5.path=x.jsonl",)),
    Case("override-index-not-a-number", ("data.datasets.x.path (command line): data.datasets is a list; index it by "
                                         "number",), overrides=("data.datasets.x.path=y",)),
    Case("override-through-a-scalar", ("lora.r.x (command line): lora.r holds a plain value, so lora.r.x cannot be "
                                       "set below it",), overrides=("lora.r.x=1",)),
    Case("override-with-python-tag", ("lora.r (command line): input should be a valid integer",),
         overrides=(f'lora.r=!!python/object/apply:os.system ["touch {PWNED}"]',)),
    Case("override-key-5000-levels-deep", ("(command line): override key is 5002 levels deep; recipe keys are at most",),
         overrides=("description." + "a." * 5000 + "b=1",)),
    Case("override-of-10000-characters", ("(command line): override 'lora.r.................", "...' is not key.path=value"),
         overrides=("lora.r" + "." * 10000 + "=1",)),
    Case("override-number-of-5000-digits", ("lora.r (command line): unable to parse input string as an integer",
                                            "characters)"), overrides=("lora.r=" + "9" * 5000,)),

    # --- data files -----------------------------------------------------------------------------------
    Case("data-missing", (f"data.datasets.0.path ({R}:8): @DIR@/data/nope.jsonl: data file not found",),
         recipe=data_recipe("data/nope.jsonl")),
    Case("data-binary", (f"data.datasets.0.path ({R}:8): @DIR@/data/blob.jsonl: not UTF-8 text (byte 0)",),
         recipe=data_recipe("data/blob.jsonl"), files={"data/blob.jsonl": noise(4096, 3)}),
    Case("data-binary-parquet", ("@DIR@/data/blob.parquet: not a readable parquet file",),
         recipe=data_recipe("data/blob.parquet"), files={"data/blob.parquet": noise(4096, 4)}),
    Case("data-latin-1", ("@DIR@/data/latin.jsonl: not UTF-8 text (byte 20); save it as UTF-8",),
         recipe=data_recipe("data/latin.jsonl"),
         files={"data/latin.jsonl": '{"instruction": "Caf\u00e9?", "output": "Ol\u00e9."}\n'.encode("latin-1")}),
    Case("data-utf-16", ("@DIR@/data/wide.jsonl: not UTF-8 text (byte 0)",), recipe=data_recipe("data/wide.jsonl"),
         files={"data/wide.jsonl": TRAIN_DATA.encode("utf-16")}),
    Case("malformed-jsonl", (f"data.datasets.0.path ({R}:8): @DIR@/data/bad.jsonl:2: malformed JSON (Expecting value) "
                             "in line starting '{\"instruction\": oops}'",),
         recipe=data_recipe("data/bad.jsonl"), files={"data/bad.jsonl": BAD_JSONL}),
    Case("malformed-json", ("@DIR@/data/bad.json:2: malformed JSON (Expecting ',' delimiter)",),
         recipe=data_recipe("data/bad.json"),
         files={"data/bad.json": '[{"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}]\n'}),
    Case("truncated-json", ("@DIR@/data/cut.json:3: malformed JSON (Expecting value)",),
         recipe=data_recipe("data/cut.json"), files={"data/cut.json": "[\n\n"}),
    Case("json-nested-too-deeply", ("@DIR@/data/deep.jsonl:1: unreadable JSON (nested too deeply)",),
         recipe=data_recipe("data/deep.jsonl"), files={"data/deep.jsonl": '{"a":' * 100_000 + "1" + "}" * 100_000}),
    Case("json-number-of-5000-digits", ("@DIR@/data/big.json: unreadable JSON (Exceeds the limit (4300 digits)",),
         recipe=data_recipe("data/big.json"), files={"data/big.json": "[" + "9" * 5000 + "]"}),
    Case("csv-stray-quote", ("@DIR@/data/bad.csv:2: malformed CSV",), recipe=data_recipe("data/bad.csv"),
         files={"data/bad.csv": 'instruction,output\n"a,b\n'}),
    Case("csv-long-header-is-excerpted", ("@DIR@/data/secret.csv:2: malformed CSV (a row of 2 fields under a header of 1: "
                                          "SECRET-HEAD-kkk",),
         recipe=data_recipe("data/secret.csv"), files={"data/secret.csv": LONG_SECRET + "\na,b\n"},
         absent=("SECRET-TAIL",)),
    Case("data-is-a-named-pipe", (f"data.datasets.0.path ({R}:8): @DIR@/data/pipe.jsonl: not a regular file",),
         recipe=data_recipe("data/pipe.jsonl"), fifos=("data/pipe.jsonl",)),
    Case("data-empty", ("@DIR@/data/empty.jsonl: holds no records",), recipe=data_recipe("data/empty.jsonl"),
         files={"data/empty.jsonl": "\n\n"}),
    Case("record-missing-field", (f"data.datasets.0.path ({R}:8): @DIR@/data/part.jsonl:2: format 'alpaca' needs "
                                  "field 'output'; the record has input, instruction",),
         recipe=data_recipe("data/part.jsonl"),
         files={"data/part.jsonl": TRAIN_DATA.splitlines()[0] + '\n{"instruction": "a", "input": ""}\n'}),
    Case("record-not-an-object", ("@DIR@/data/nums.json: record 0: format 'alpaca' expects each record to be an "
                                  "object, found int",), recipe=data_recipe("data/nums.json"),
         files={"data/nums.json": "[1, 2]"}),
    Case("oasst-tree-given-as-alpaca", ("@DIR@/data/trees.jsonl:1: format 'alpaca' needs field 'instruction'; "
                                        "the record has message_tree_id, prompt, tree_state",),
         recipe=data_recipe("data/trees.jsonl"), files={"data/trees.jsonl": OASST_TREE}),
    Case("alpaca-given-as-oasst", ("@DIR@/data/train.jsonl:1: format 'oasst' needs a message tree with a "
                                   "'prompt' message",), recipe=data_recipe("data/train.jsonl", "oasst")),
    Case("oasst-replies-not-a-list", ("@DIR@/data/tree.jsonl:1: format 'oasst'",),
         recipe=data_recipe("data/tree.jsonl", "oasst"),
         files={"data/tree.jsonl": OASST_TREE.replace('"replies": []', '"replies": 7')}),
    Case("chat-unknown-role", ("@DIR@/data/chat.jsonl:1: format 'chat': unknown role 'hacker'; expected one of "
                               "system, user, assistant",), recipe=data_recipe("data/chat.jsonl", "chat"),
         files={"data/chat.jsonl": CHAT_DATA.replace('"role": "user"', '"role": "hacker"')}),
    Case("chat-messages-not-a-list", ("chat.jsonl:1: format 'chat' needs a 'conversations' (ShareGPT) or 'messages' "
                                      "(OpenAI) list",), recipe=data_recipe("data/chat.jsonl", "chat"),
         files={"data/chat.jsonl": '{"messages": "Hi there"}\n'}),
    Case("template-attribute-access", (f"data.datasets.0.prompt ({R}:8): field {{question.__class__.__init__.__globals__}} "
                                       "is not a plain name",),
         recipe=data_recipe("data/qa.jsonl", "template",
                            "prompt: 'Q: {question.__class__.__init__.__globals__}', response: '{answer}'"),
         files={"data/qa.jsonl": '{"question": "2+2?", "answer": "4"}\n'}),
    Case("template-index-in-format-spec", (f"data.datasets.0.response ({R}:8): field {{x[0]}} is not a plain name",),
         recipe=data_recipe("data/qa.jsonl", "template", "prompt: 'Q: {question}', response: '{answer:{x[0]}}'"),
         files={"data/qa.jsonl": '{"question": "2+2?", "answer": "4"}\n'}),
    Case("data-path-escapes-to-etc-passwd", (f"data.datasets.0.path ({R}:8): /etc/passwd: unsupported file type "
                                             "(none)",),
         recipe=data_recipe("../../../../../../../../../../etc/passwd"), absent=("/etc/passwd",)),
    Case("etc-passwd-read-as-data", ("@DIR@/data/linked/passwd.jsonl:1: malformed JSON (Expecting value) in line "
                                     "starting",),  # a link in a data folder is read (the path itself resolves)
         recipe=data_recipe("data/linked"), links={"data/linked/passwd.jsonl": "/etc/passwd"}, absent=("/etc/passwd",)),
    Case("passwd-copied-as-jsonl", ("@DIR@/data/passwd.jsonl:1: malformed JSON (Expecting value) in line starting "
                                    "'root:x:0:0:root:/root:/bin/bash'",),
         recipe=data_recipe("data/passwd.jsonl"), files={"data/passwd.jsonl": SECRET_FILE}, absent=tuple(SECRET_LINES[1:])),
    Case("passwd-copied-as-csv", ("@DIR@/data/passwd.csv:3: malformed CSV (a row of 4 fields under a header of 1",),
         recipe=data_recipe("data/passwd.csv"), files={"data/passwd.csv": SECRET_FILE}, absent=tuple(SECRET_LINES[1:])),

    # --- what train would refuse after loading torch: validate sees it first -------------------------------
    Case("model-type-misspelt", ("model.config.model_type (command line): unknown model type 'llamma': transformers",
                                 "did you mean 'llama'?"), overrides=("model.config.model_type=llamma",)),
    Case("hidden-size-not-divisible-by-heads", (f"model.config ({R}:4): transformers' LlamaConfig refuses these values: "
                                                "The hidden size (65) is not a multiple of the number of attention heads (2)",),
         overrides=("model.config.hidden_size=65",)),
    Case("model-config-key-misspelt", ("model.config.hiden_size (command line): not a field of transformers' LlamaConfig, "
                                       "so nothing would read it; did you mean 'hidden_size'?",),
         overrides=("model.config.hiden_size=64",)),
    Case("model-config-value-of-the-wrong-type", ("model.config.num_attention_heads (command line): transformers' "
                                                  "LlamaConfig refuses it: Field 'num_attention_heads' expected int",),
         overrides=("model.config.num_attention_heads=two",)),
    Case("lora-targets-match-nothing", ("lora.target_modules (command line): [q_projj] matches no linear layer of this "
                                        "model; its linear layers are named down_proj, gate_proj, k_proj, o_proj, q_proj",),
         overrides=("lora.target_modules=[q_projj]",)),
    Case("lora-regex-matches-nothing", ("lora.target_modules (command line): '.*attn\\.qq_proj' matches no linear layer",),
         overrides=("lora.target_modules=.*attn\\.qq_proj",)),
    # a leaf name written as text: peft fullmatches it against whole names; it read "'q_proj' matches no linear
    # layer ...; its linear layers are named ..., q_proj, ...", a contradiction
    Case("lora-target-name-as-text", ("lora.target_modules (command line): 'q_proj' is a text, so peft reads it as a "
                                      "regular expression that must match a layer's whole name",
                                      "write a list: [q_proj]"),
         overrides=("lora.target_modules=q_proj",), absent=("matches no linear layer",)),
    Case("lora-layers-past-the-last", ("lora.layers_to_transform (command line): [7] names layers this model does "
                                       "not have: its targeted layers are layers 0 to 1",),
         overrides=("lora.layers_to_transform=[1, 7]",)),
    Case("val-size-larger-than-the-data", ("data.val_size (command line): data.val_size 5 leaves no training examples: "
                                           "the data gives at most 2 examples; set it below 2",),
         overrides=("data.val_size=5",)),
    Case("malformed-record-after-the-first-few", (f"data.datasets.0.path ({R}:8): @DIR@/data/late.jsonl:13: "
                                                  "format 'alpaca' needs field 'output'",),
         recipe=data_recipe("data/late.jsonl"), files={"data/late.jsonl": TRAIN_DATA * 6 + '{"instruction": "a"}\n'}),
    Case("output-dir-is-a-file", ("output_dir (command line): @DIR@/data/train.jsonl cannot be made: "
                                  "@DIR@/data/train.jsonl is a file; choose another output_dir",),
         overrides=("output_dir=data/train.jsonl",)),
    # a place no run directory can be made in (as root too: /proc takes no new folders): train ended in a traceback
    Case("output-dir-cannot-be-made-there", ("output_dir (command line): /proc/qlorafx-run cannot be made: /proc cannot "
                                             "be written to",), overrides=("output_dir=/proc/qlorafx-run",)),
    Case("output-dir-holds-a-finished-run", ("output_dir (command line): @DIR@/finished-run already holds a finished "
                                             "run; pass --overwrite to replace it",), overrides=(FINISHED,)),
    Case("output-dir-is-someone-elses-folder", ("output_dir (command line): @DIR@/not-a-run is not empty and holds no "
                                                "qlorafx run",), flags=("--overwrite",), overrides=("output_dir=not-a-run",)),
    Case("max-length-past-the-position-embeddings", ("data.max_length (command line): 4096 tokens, but this llama model "
                                                     "has position embeddings for 2048 (max_position_embeddings)",),
         overrides=("data.max_length=4096",)),
    Case("learning-rate-missing-its-minus", ("optimizer.lr (command line): a learning rate of 10000 makes training "
                                             "diverge at once", "did you mean 1e-4?"), overrides=("optimizer.lr=1e4",)),
    Case("keys-in-the-wrong-section", (
        f"max_steps ({R}:10): unknown key; max_steps is a key of training: move it there (training.max_steps)",
        f"data.datasets.0.max_length ({R}:8): unknown key; max_length is a key of data: move it there (data.max_length)",
    ), recipe=recipe("{path: data/train.jsonl, format: alpaca, max_length: 64}", extra="max_steps: 5\n"), max_lines=3),
    # a key of another section that also looks like a key here: the section, not the look-alike ('lora' for lr)
    Case("vocab-size-below-the-tokenizers", ("model.config.vocab_size (command line): 100, but the tokenizer has 259 "
                                             "tokens (ids up to 258); set it to 259 or more",),
         overrides=("model.config.vocab_size=100",)),
    Case("model-type-with-no-language-model", ("model.config.model_type (command line): transformers has no causal "
                                               "language model for a vit config, so train cannot build it",),
         overrides=("model.config={model_type: vit}",)),
    Case("model-config-beside-a-pretrained-base", (f"model.config ({R}:4): model.config applies to loader from_config "
                                                   "only, but model.loader is pretrained",),
         overrides=("model.loader=pretrained", "model.path=some-org/some-model")),
    Case("keys-of-another-section-that-look-like-one-here", (
        "lr (command line): unknown key; lr is a key of optimizer: move it there (optimizer.lr)",
        "training.warmup_steps (command line): unknown key; warmup_steps is a key of scheduler: move it there "
        "(scheduler.warmup_steps)",
        "lora.bits (command line): unknown key; bits is a key of quantization: move it there (quantization.bits)",
    ), overrides=("lr=1e-4", "training.warmup_steps=5", "lora.bits=4"), absent=("did you mean",), max_lines=4),

    # --- other commands: show, preprocess -------------------------------------------------------------
    Case("show-python-tag", (f"<recipe> ({R}:1): YAML tag tag:yaml.org,2002:python/object/apply:os.system",),
         command="show", recipe=f'model: !!python/object/apply:os.system ["touch {PWNED}"]\n'),
    Case("show-unknown-key", ("lora.alpah (command line): unknown key; did you mean 'alpha'?",), command="show",
         overrides=("lora.alpah=4",)),
    Case("preprocess-chat-roles-out-of-order", ("@DIR@/data/chat.jsonl:2: format 'chat': roles must alternate "
                                                "user, assistant, ... and end with assistant; found user",),
         command="preprocess", recipe=data_recipe("data/chat.jsonl", "chat"),
         files={"data/chat.jsonl": CHAT_DATA + '{"messages": [{"role": "user", "content": "Hi"}]}\n'}),
    Case("preprocess-hub-dataset-offline", ("some-org/some-dataset: is a hub dataset id and the hub is offline",),
         command="preprocess", recipe=data_recipe("some-org/some-dataset")),

    # --- train: an existing run directory is never touched --------------------------------------------
    Case("train-over-a-finished-run", ("error: output_dir @DIR@/finished-run already holds a finished run; pass "
                                       "--overwrite to replace it",), command="train", overrides=(FINISHED,)),
    Case("train-into-a-non-run-folder-with-overwrite", ("error: output_dir @DIR@/not-a-run is not empty and holds no "
                                                        "qlorafx run",),
         command="train", flags=("--overwrite",), overrides=("output_dir=not-a-run",)),
    Case("train-overwrite-with-malformed-data", ("error: @DIR@/data/bad.jsonl:2: malformed JSON",),
         command="train", flags=("--overwrite",), recipe=data_recipe("data/bad.jsonl"), overrides=(FINISHED,),
         files={"data/bad.jsonl": BAD_JSONL}),
    Case("train-t5-with-default-packing-and-overwrite",
         ("error: data.packing: true, but the model is an encoder-decoder (T5 family)", "set data.packing=false"),
         command="train", flags=("--overwrite",), recipe=T5_RECIPE, overrides=(FINISHED,)),
    Case("preprocess-t5-train-on-inputs",
         ("error: data.train_on_inputs: true, but the model is an encoder-decoder (T5 family)",),
         command="preprocess", recipe=T5_RECIPE, overrides=("data.packing=false", "data.train_on_inputs=true")),
    Case("fast-train-bad-recipe-with-overwrite", ("lora.r (command line): input should be greater than 0",),
         command="train", flags=("--overwrite",), overrides=("lora.r=0", FINISHED)),
    Case("fast-train-python-tag-with-overwrite", (f"({R}:5): YAML tag tag:yaml.org,2002:python/object/apply:os.system",),
         command="train", flags=("--overwrite",), overrides=(FINISHED,),
         recipe=recipe().replace("lora: {r: 8, alpha: 16}", f'lora: !!python/object/apply:os.system ["touch {PWNED}"]')),
    Case("fast-train-import-path-with-overwrite", ("optimizer.name (command line): unknown optimizer 'torch.optim.AdamW'",),
         command="train", flags=("--overwrite",), overrides=("optimizer.name=torch.optim.AdamW", FINISHED)),
]
