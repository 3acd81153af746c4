"""Shared fixtures. Everything runs offline: built-in tiny models, locally built tokenizer."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def tiny_neox():
    """The built-in tiny GPT-NeoX and its tokenizer (seed 0)."""
    from synergy_core.models import load_model, load_tokenizer

    spec = {"hf_id": "builtin:tiny-gpt-neox", "seed": 0}
    return load_model(spec), load_tokenizer(spec)
