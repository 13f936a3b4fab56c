"""Shared test setup. Fixtures live in tests/fixtures/, one module per area."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

pytest_plugins = [
    "tests.fixtures.media",
    "tests.fixtures.models",
    "tests.fixtures.servers",
    "tests.fixtures.secrets",
    "tests.fixtures.runtime",
]
