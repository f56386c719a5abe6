"""Template: prompt and response templates written in the recipe, naming the record's fields.

With ``prompt: "Q: {question}\\nA: "`` and ``response: "{answer}"``, the record::

    {"question": "What is 2+2?", "answer": "4"}

renders to the user turn ``Q: What is 2+2?\\nA: `` and the assistant turn ``4``. Fields are
plain names in braces (``{{`` for a literal brace); attribute or index access is refused, so a
template can only place a record's text. For inference a prompt record holds the prompt's fields;
a prompt text fills a prompt template that names exactly one field.
"""

from __future__ import annotations

import string
from typing import Literal

from pydantic import Field, field_validator

from qlorafx.data.formats.base import PLACEHOLDER, DatasetBase, Format, RecordError, Turn, register, require_text


def template_fields(template: str) -> list[str]:
    """The fields a template names, those nested in a format spec (``{x:>{width}}``) included."""
    names = []
    for _, name, spec, _ in string.Formatter().parse(template):
        if name is not None:
            names += [name, *template_fields(spec or "")]
    return names


class TemplateDataset(DatasetBase):
    format: Literal["template"] = "template"
    prompt: str = Field(description="Prompt template, e.g. 'Q: {question}\\nA: '.")
    response: str = Field(description="Response template, e.g. '{answer}'.")

    @field_validator("prompt", "response")
    @classmethod
    def _plain_fields(cls, v: str) -> str:
        try:
            names = template_fields(v)
        except ValueError as err:
            raise ValueError(f"not a valid template ({err}); write fields as {{name}} and a literal brace as {{{{") from None
        for name in names:
            if not name.isidentifier():
                raise ValueError(f"field {{{name}}} is not a plain name; use {{field}} with letters, digits and _")
        return v


@register
class Template(Format):
    name = "template"
    version = "1"
    section = TemplateDataset

    def conversations(self, record, options, counts=None):
        def fill(template: str) -> str:
            values = {name: require_text(record, name, self.name) for name in template_fields(template)}
            try:
                return template.format(**values)
            except (ValueError, IndexError) as err:  # a format spec that does not suit text, e.g. {x:d}
                raise RecordError(f"format {self.name!r}: template {template!r} cannot place this record's text "
                                  f"({err}); use plain {{field}} placeholders") from None

        return [[Turn("user", fill(options.prompt)), Turn("assistant", fill(options.response))]]

    def prompt(self, text, options):
        fields = list(dict.fromkeys(template_fields(options.prompt)))
        if len(fields) != 1:
            raise RecordError(f"the prompt template {options.prompt!r} names {len(fields)} fields "
                              f"({', '.join(fields) or 'none'}), so a prompt text cannot fill it; give "
                              f"--file records with those fields")
        return self.one({fields[0]: text, **_response_fields(options)}, options)

    def prompt_record(self, record, options):
        return self.one({**record, **_response_fields(options)}, options)


def _response_fields(options: TemplateDataset) -> dict[str, str]:
    return {name: PLACEHOLDER for name in template_fields(options.response)}
