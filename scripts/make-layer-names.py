#!/usr/bin/env python3
"""Write streamdream/models/layer_names.json: the layer names of every registry model.

The preflight checks `layers:` against this table without importing TensorFlow. Rerun this
after adding a model to the registry or upgrading Keras (tests/test_preflight.py compares
the table with the real networks):

    .venv/bin/python scripts/make-layer-names.py
"""

from __future__ import annotations

import json
from pathlib import Path

from streamdream.models.layer_names import TABLE_PATH, build_layer_names
from streamdream.models.registry import REGISTRY


def main() -> None:
    table = {name: build_layer_names(name) for name in REGISTRY}
    text = json.dumps(table, indent=0, separators=(",", ":"), sort_keys=True)
    Path(TABLE_PATH).write_text(text + "\n", encoding="utf-8")
    print(f"wrote {TABLE_PATH}: {sum(len(v) for v in table.values())} names of {len(table)} models")


if __name__ == "__main__":
    main()
