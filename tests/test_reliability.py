"""Every job caps its thread pools (hub, secrets and every other fault: tests/test_faults.py)."""
import os
import types

from synergy_core.runtime import THREAD_ENV_VARS, start_rule


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
