"""Named chat templates, for tokenizers that ship none. Jinja, as transformers renders them."""

from qlorafx.registry import Registry

CHAT_TEMPLATES: Registry[str] = Registry("chat template")

CHAT_TEMPLATES.register("chatml")(
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Zephyr / TinyLlama-chat style: the tokenizer's EOS ends each turn.
CHAT_TEMPLATES.register("zephyr")(
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
