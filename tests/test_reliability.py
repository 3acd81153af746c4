"""Failure modes: loud, early and safe. Hub access, secrets, threads, non-finite data."""
import json
import os
import socket
import time
import types

import numpy as np
import pytest

from synergy_core.io import save_arrays
from synergy_core.models import ModelUnavailableError, load_model, load_tokenizer
from synergy_core.runtime import THREAD_ENV_VARS, start_rule


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("init", ["pretrained", "random"])
def test_missing_hub_model_fails_fast_without_network(no_network, tmp_path, init):
    spec = {"hf_id": "EleutherAI/pythia-1b", "revision": "step1000", "init": init}
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as err:
        load_model(spec)
    assert time.perf_counter() - start < 10
    msg = str(err.value)
    assert "EleutherAI/pythia-1b (revision step1000)" in msg
    assert "snakemake download_models" in msg and "--revision step1000" in msg
    with pytest.raises(ModelUnavailableError):
        load_tokenizer(spec)
    assert no_network == []


def test_unknown_hub_id_fails_fast(no_network, tmp_path):
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match="model no-such-org/no-such-model: it is not in the local cache"):
        load_model({"hf_id": "no-such-org/no-such-model"})
    assert time.perf_counter() - start < 10


def test_local_path_that_is_not_a_causal_lm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "vocab_size": 10}))
    with pytest.raises(ModelUnavailableError, match=f"local_path '{tmp_path}' is not a loadable"):
        load_model({"hf_id": "x/y", "local_path": str(tmp_path)})


def test_builtin_models_never_touch_the_network(no_network):
    spec = {"hf_id": "builtin:tiny-llama", "revision": "step2", "seed": 0}
    load_model(spec)
    load_tokenizer(spec)
    assert no_network == []


def _fake_snakemake(tmp_path, threads):
    return types.SimpleNamespace(log=[str(tmp_path / "rule.log")], threads=threads, rule="r",
                                 wildcards={"model": "m"})


def test_rule_start_caps_every_thread_pool(tmp_path, monkeypatch):
    import torch
    from threadpoolctl import threadpool_info

    for var in THREAD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    before = torch.get_num_threads()
    try:
        start_rule(_fake_snakemake(tmp_path, 1), uses_torch=True)
        assert torch.get_num_threads() == 1
        assert all(os.environ[v] == "1" for v in THREAD_ENV_VARS)
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    finally:
        torch.set_num_threads(before)
        import logging
        import sys

        logging.getLogger().handlers.clear()
        sys.stderr = sys.__stderr__
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=None)


def test_hf_token_never_reaches_outputs_or_logs(tmp_path, monkeypatch, repo):
    from synergy_core.extract import extract_activations
    from synergy_core.prompts import load_prompts

    secret = "hf_SECRETTOKEN1234567890"
    monkeypatch.setenv("HF_TOKEN", secret)
    prompts = load_prompts(repo / "config/prompts.tsv")[:2]
    spec = {"hf_id": "builtin:tiny-gpt-neox", "name": "t", "seed": 0}
    arrays, prov = extract_activations(spec, prompts, num_tokens=6, device="cpu")
    save_arrays(tmp_path / "a.npz", prov, **arrays)
    assert secret.encode() not in (tmp_path / "a.npz").read_bytes()
    assert secret not in json.dumps(prov)


def test_nonfinite_activations_become_counted_nan_cells(tmp_path):
    from synergy_core.io import load_arrays
    from synergy_core.stages.phiid import compute_phiid_chunk, merge_phiid_chunks
    from synergy_core.stages.rank import rank_model

    rng = np.random.default_rng(0)
    acts = np.exp(0.3 * rng.standard_normal((3, 6, 25)).cumsum(-1)).astype(np.float32)
    acts[1, 2, 7] = np.inf   # e.g. fp16 overflow in one step of one prompt
    acts[0, 4, 3] = np.nan
    save_arrays(tmp_path / "acts.npz", {"config_hash": "h"}, acts=acts,
                head_labels=np.array([f"L{h // 2}H{h % 2}" for h in range(6)]),
                prompt_ids=np.array(["a", "b", "c"]), categories=np.array(["x"] * 3),
                layer=np.arange(6) // 2, head=np.arange(6) % 2)
    cfg = dict(tau=1, redundancy="MMI", aggregation="per_prompt", backend="closed_form", n_chunks=2)
    for k in range(2):
        compute_phiid_chunk(tmp_path / "acts.npz", tmp_path / f"c{k}.npz", k, cfg)
    merge_phiid_chunks(tmp_path / "acts.npz", [tmp_path / f"c{k}.npz" for k in range(2)],
                       tmp_path / "m.npz", cfg)
    merged = load_arrays(tmp_path / "m.npz")[0]
    # Head 2 spoils its 5 pairs in prompt 1, head 4 its 5 pairs in prompt 0; pair (2, 4) is NaN
    # in both prompts, so heads 2 and 4 count 6 cells each, the others one per spoiled partner.
    np.testing.assert_array_equal(merged["per_head_nan"], [2, 2, 6, 2, 6, 2])
    assert merged["nan_count"].sum() == 10
    sts = merged["atoms"][list(merged["atom_names"]).index("sts")]
    assert np.isfinite(sts).sum() == 30     # every pair keeps at least one valid prompt
    rank_model(tmp_path / "m.npz", tmp_path / "acts.npz", tmp_path / "h.tsv", tmp_path / "p.tsv",
               tmp_path / "d.json")
    import pandas as pd

    table = pd.read_csv(tmp_path / "h.tsv", sep="\t")
    assert table.syn_red.notna().all() and list(table.nan_cells) == [2, 2, 6, 2, 6, 2]
