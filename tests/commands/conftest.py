"""Fixtures shared by the command tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny import tiny_checkpoints
from vqvid.persistence import export_model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny checkpoints of a VQ-VAE and both priors ("vqvae", "top", "bottom") and their model folder ("model"),
    made once per test module."""
    root = tmp_path_factory.mktemp("models")
    paths = tiny_checkpoints(root)
    paths["model"] = export_model(paths["vqvae"], root / "model", paths["top"], paths["bottom"])
    return paths
