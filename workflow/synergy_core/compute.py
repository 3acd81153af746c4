"""How the extraction and ablation stages compute: dtype, TF32 and how many GPUs hold a model.

No torch import: the Snakefile reads these when it plans a run (rule params, resources).

Config keys (``workflow/schemas/config.schema.yaml``):

* ``generation.dtype``: the extraction's dtype for every model (``null``: each model's own
  ``models.<name>.dtype``, float32 by default, the reference);
* ``ablation.dtype``: the ablation's dtype (``null``: the extraction's). Whatever the dtype,
  logits are upcast to float32 before the log-softmax and the KL (:func:`ablation.kl_for_masks`);
* ``generation.tf32``: TF32 matmuls (and cuDNN convolutions) on CUDA in both stages;
* ``generation.gpus``: GPUs one job spreads a model over (accelerate's ``device_map="auto"``:
  whole decoder layers per GPU, balanced), 1 = the whole model on ``generation.device``.

Each stage's settings reach its jobs through the rule params (:func:`compute_settings`), so
changing one reruns exactly the outputs whose numbers it changes: a dtype override equal to a
model's own dtype changes nothing and reruns nothing.
"""

from __future__ import annotations

#: The stages these settings apply to (the perturbation and fine-tuning stages have their own).
STAGES = ("extraction", "ablation")
#: Keys of the ``generation`` section that are compute settings, not decoding settings.
GENERATION_KEYS = ("dtype", "tf32", "gpus")


def stage_dtype(config: dict, model: str, stage: str) -> str:
    """The dtype ``stage`` loads ``model`` in: ``ablation.dtype`` (ablation only), else
    ``generation.dtype``, else the model's own ``dtype``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    if stage == "ablation" and config["ablation"].get("dtype"):
        return config["ablation"]["dtype"]
    return config["generation"].get("dtype") or config["models"][model].get("dtype", "float32")


def gpus_needed(config: dict, model: str | None = None) -> int:
    """GPUs an extraction or ablation job of ``model`` asks for (a SLURM profile's
    ``gres=gpu:N``): ``generation.gpus``, the same for every model (``model`` is accepted so
    that a per-model rule can be added without changing callers). A CPU run needs none, but
    ``generation.gpus`` > 1 is refused with ``generation.device: cpu`` (config.py)."""
    return int(config["generation"].get("gpus", 1))


def compute_settings(config: dict, model: str, stage: str) -> dict:
    """``{"dtype", "tf32", "gpus"}`` of one model's ``stage``: the rule param that carries them
    to the job (and reruns it when one changes)."""
    return {"dtype": stage_dtype(config, model, stage),
            "tf32": bool(config["generation"].get("tf32", False)),
            "gpus": gpus_needed(config, model)}


def apply_compute(spec: dict, compute: dict | None) -> tuple[dict, dict]:
    """In a job: the model spec with the stage's dtype (when it sets one) and the full settings,
    ``compute`` over the defaults (the spec's dtype, no TF32, one device)."""
    compute = {"tf32": False, "gpus": 1, **(compute or {})}
    return (dict(spec, dtype=compute["dtype"]) if compute.get("dtype") else spec), compute
