"""``streamdream config-schema [--markdown]``: the config file's JSON Schema, or its reference in Markdown.

Both are generated from the pydantic models in ``config.py`` (``config.json_schema()``), so
they cannot drift from what ``load_config`` accepts: every field with its dotted name, type,
default, bounds and description. The committed copies (docs/config.schema.json,
docs/config-reference.md) are checked against this output by tests/test_docs.py; regenerate
them with::

    python -m streamdream.cli config-schema > docs/config.schema.json
    python -m streamdream.cli config-schema --markdown > docs/config-reference.md
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from ..config import json_schema
from ..runtime.workers import StopToken

Node = dict[str, Any]

_BOUNDS = (
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} characters"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
)

_INTRO = """\
# Configuration reference

[README](../README.md) · [command line](command-line.md) · [inputs and outputs](inputs-outputs.md) · \
[config reference](config-reference.md) · [installations](installations.md) · [cluster](cluster.md) · \
[models and the look](dreaming.md) · [speed and benchmarks](speed.md) · [architecture](architecture.md)

Generated from the config models in `streamdream/config.py` by
`streamdream config-schema --markdown`; do not edit by hand (`tests/test_docs.py` fails when
this page or [config.schema.json](config.schema.json) is stale). Regenerate both with:

```sh
python -m streamdream.cli config-schema > docs/config.schema.json
python -m streamdream.cli config-schema --markdown > docs/config-reference.md
```

A config file is YAML with one key per section below; every section and every key may be left
out (the default applies), unknown keys are refused, and an error names the file, line, key and
value (`c.yaml:4: dream.octaves: must be >= 1, got 0`). `streamdream validate-config FILE`
checks a file as `run` or `serve` would. Ready files are in [configs/](../configs/).
A default of `null` means "not set" (the descriptions call it None): write `null` or leave the
key out. `a[]` is a list of items, `a.NAME` a mapping whose keys you choose.

## In an editor

`streamdream config-schema` prints the JSON Schema (draft 7) of a config file, the same
as [docs/config.schema.json](config.schema.json). Editors that use the
[YAML language server](https://github.com/redhat-developer/yaml-language-server) (VS Code's
YAML extension, Neovim, Helix, Emacs lsp-mode...) then complete keys, show each one's
description and flag a wrong key, type or bound as you type. Name the schema on the file's first
line (a path is relative to the YAML file; the files in `configs/` do this):

```yaml
# yaml-language-server: $schema=../docs/config.schema.json
```

or once for a folder, in VS Code's `settings.json`:

```json
"yaml.schemas": {"./docs/config.schema.json": ["configs/*.yaml", "*.streamdream.yaml"]}
```

Outside this checkout, write the schema where the editor finds it:
`streamdream config-schema > streamdream.schema.json`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _resolve(schema: Node, node: Node) -> Node:
    ref = node.get("$ref")
    return schema["definitions"][ref.rsplit("/", 1)[1]] if ref else node


def _branches(node: Node) -> list[Node]:
    return list(node["anyOf"]) if "anyOf" in node else [node]


def _type(schema: Node, node: Node, branch: bool = False) -> str:
    """What the YAML may hold, in words: `number or null`, `list of string`, `"tcp" or "udp"`."""
    if "anyOf" in node:
        words: list[str] = []
        for option in node["anyOf"]:
            word = _type(schema, option, branch=True)
            if word not in words:
                words.append(word)
        text = " or ".join(words)
        return f"({text})" if branch else text
    if "enum" in node:
        return " or ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "$ref" in node:
        return "mapping"
    kind = node.get("type")
    if kind == "string" and branch and "title" in node:  # a named shorthand (config.DURATION_TEXT...)
        return str(node["title"])
    if kind == "array" and isinstance(node.get("items"), list):  # a tuple: [number, number]
        return "[" + ", ".join(_type(schema, item) for item in node["items"]) + "]"
    if kind == "array":
        return f"list of {_type(schema, node.get('items', {}), branch=True)}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"mapping of name to {_type(schema, node['additionalProperties'], branch=True)}"
    return str(kind or "any")


def _bounds(node: Node) -> str:
    found: list[str] = []
    for branch in _branches(node):
        for key, words in _BOUNDS:
            if key in branch and not (key.endswith("Items") and isinstance(branch.get("items"), list)):  # [number, number] says it
                found.append(words.format(json.dumps(branch[key])))
        if "pattern" in branch and not ("title" in branch and "anyOf" in node):
            found.append(f"matches `{branch['pattern']}`")
    return ", ".join(found)


def _compact(schema: Node, value: Any, node: Node) -> Any:
    """A default without the keys its items leave at their own defaults: [{uri: dream.mp4}]."""
    if isinstance(value, list):
        items = next((b.get("items") for b in _branches(node) if b.get("type") == "array"), None)
        return [_compact(schema, v, items) for v in value] if items else value
    if isinstance(value, dict):
        model = next((_resolve(schema, b) for b in _branches(node) if "$ref" in b), None)
        if model is None:
            return value
        props = model.get("properties", {})
        return {k: v for k, v in value.items() if k not in props or "default" not in props[k] or props[k]["default"] != v}
    return value


def _default(schema: Node, node: Node, required: bool) -> str:
    if required:
        return "required"
    if "default" not in node:
        return ""
    return f"`{json.dumps(_compact(schema, node['default'], node))}`"


def _nested(schema: Node, node: Node) -> tuple[Node, str] | None:
    """The section model a field holds, and how its keys are named under the field's: '[]', '.NAME' or ''."""
    for branch in _branches(node):
        items = branch.get("items")
        if branch.get("type") == "array" and isinstance(items, dict):
            for item in _branches(items):
                if "$ref" in item:
                    return _resolve(schema, item), "[]"
        extra = branch.get("additionalProperties")
        if branch.get("type") == "object" and isinstance(extra, dict) and "$ref" in extra:
            return _resolve(schema, extra), ".NAME"
    for branch in _branches(node):
        if "$ref" in branch:
            return _resolve(schema, branch), ""
    return None


def _rows(schema: Node, model: Node, prefix: str) -> Iterator[str]:
    required = set(model.get("required", ()))
    for key, node in model.get("properties", {}).items():
        name = f"{prefix}.{key}"
        yield (
            f"| `{name}` | {_cell(_type(schema, node))} | {_cell(_default(schema, node, key in required))} "
            f"| {_cell(_bounds(node))} | {_cell(node.get('description', ''))} |"
        )
        inner = _nested(schema, node)
        if inner is not None:
            yield from _rows(schema, inner[0], name + inner[1])


def markdown(schema: Node) -> str:
    """The reference: a table per section, a row per field (nested ones by their dotted names)."""
    out = [_INTRO]
    sections = schema["properties"]
    out.append("## Sections\n")
    out.append(" ".join(f"[`{name}`](#{name})" for name in sections) + "\n")
    for name, node in sections.items():
        inner = _nested(schema, node)
        assert inner is not None, f"config section {name} has no model"
        model, suffix = inner
        out.append(f"## {name}\n")
        out.append(f"{model.get('description') or node.get('description', '')}\n")
        if "$ref" not in node:  # a list, or a shorthand beside the mapping
            kind, default = _cell(_type(schema, node)), _default(schema, node, False)
            default = "" if default == "`{}`" else f", default {default}"  # {}: every key at its own default
            out.append(f"`{name}`: {kind}{default}. {node.get('description', '')}\n")
        out.append("| key | type | default | bounds | description |\n| --- | --- | --- | --- | --- |")
        out.append("\n".join(_rows(schema, model, name + suffix)) + "\n")
    return "\n".join(out)


def schema_json() -> str:
    """docs/config.schema.json's text."""
    return json.dumps(json_schema(), indent=2) + "\n"


def reference_markdown() -> str:
    """docs/config-reference.md's text."""
    return markdown(json_schema())


def command(args: argparse.Namespace, stop: StopToken) -> int:
    print(reference_markdown() if args.markdown else schema_json(), end="")
    return 0
