"""``streamdream models``: the models this machine knows, whether their weights are here, and their presets."""

from __future__ import annotations

import argparse

from ..models.registry import REGISTRY
from ..runtime.workers import StopToken


def command(args: argparse.Namespace, stop: StopToken) -> int:
    for entry in REGISTRY.values():
        ok, where = entry.available()
        print(f"{entry.name:<20} {'available' if ok else 'not available':<14} {entry.description}")
        print(f"{'':<20} weights: {entry.weights_source}; {where}")
        for name, look in entry.presets.items():
            layers = ",".join(look.layer_names) + (" (animal classes)" if look.layers[0].channels else "")
            print(f"{'':<20} preset {name:<8} {look.description}: {layers}")
    print("also: any .keras/.h5 model file, with --layers")
    return 0
