"""Shared fixtures. Everything runs offline: built-in tiny models, locally built tokenizer."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# the trained built-in models are cached per test session (models.builtin_cache_path), never in
# the user's home; workflow runs started by the tests inherit it
if "SYNERGY_CORE_BUILTIN_CACHE" not in os.environ:
    import tempfile

    os.environ["SYNERGY_CORE_BUILTIN_CACHE"] = tempfile.mkdtemp(prefix="synergy-core-builtin-")


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def tiny_neox():
    """The built-in tiny GPT-NeoX and its tokenizer (seed 0)."""
    from synergy_core.models import load_model, load_tokenizer

    spec = {"hf_id": "builtin:tiny-gpt-neox", "seed": 0}
    return load_model(spec), load_tokenizer(spec)
