"""Fine-tuning runs with trl's GRPO and SFT trainers (the paper's Fig 5), on a model whose
trainable elements are restricted by :mod:`.finetune`: the reward, the training rows, trainer
settings, evaluation-step saves and checkpoints that resume.

**Checkpoints.** trl's trainers save a full checkpoint (weights, optimiser, scheduler, RNG
states) every ``checkpoint_every`` steps and at each evaluation step into the run's scratch
directory; a rerun of the job resumes from the last one (on a CPU the resumed run is bitwise the
uninterrupted one; ``tests/test_finetune.py``). At each evaluation step the trainable elements
are saved alone (:func:`.finetune.trainable_values`), the only thing the evaluation jobs need.

The reward imports :mod:`.scoring` (math-verify); the evaluation jobs do not import this module,
so a change to the scoring reruns the training (its reward changed) but no evaluation job.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from .finetune import trainable_values
from .finetune_plan import run_label, run_seed

log = logging.getLogger(__name__)


# --- data and reward --------------------------------------------------------------------------

def _as_text(completion) -> str:
    """A completion as text: trl passes strings, or message lists for conversational data."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if isinstance(m, dict))


def correctness_reward(completions, answer, **_) -> list[float]:
    """1.0 when the completion's last ``\\boxed{}`` equals the reference answer under math-verify
    (:func:`.scoring.score_answer`, the perturbation stage's scoring), else 0.0; a reference
    math-verify cannot parse gives 0 to every completion (such problems are dropped before)."""
    from .scoring import parse_reference, score_answer

    rewards = []
    for completion, reference in zip(completions, answer):
        correct, _, _ = score_answer(parse_reference(reference), _as_text(completion))
        rewards.append(1.0 if correct else 0.0)
    return rewards


def grpo_rows(problems: list[dict], template: str, chat: bool) -> list[dict]:
    """GRPO's training rows: the prompt (text, or a user turn with a chat template) and answer."""
    from .tasks import format_prompt

    def prompt(p):
        text = format_prompt(template, p["problem"])
        return [{"role": "user", "content": text}] if chat else text
    return [dict(prompt=prompt(p), answer=p["answer"]) for p in problems]


def sft_rows(examples: list[dict], template: str, chat: bool, eos: str) -> list[dict]:
    """SFT's prompt-completion rows (the loss is on the completion only): the formatted problem and
    the worked solution (raw text ends with the end-of-text token, so the model learns to stop)."""
    from .tasks import format_prompt

    rows = []
    for ex in examples:
        text = format_prompt(template, ex["problem"])
        if chat:
            rows.append(dict(prompt=[{"role": "user", "content": text}],
                             completion=[{"role": "assistant", "content": ex["solution"]}]))
        else:
            rows.append(dict(prompt=text, completion=ex["solution"] + eos))
    return rows


# --- training ---------------------------------------------------------------------------------

def _trainer_args(method: str, cfg: dict, out_dir: Path, seed: int, device: str, save_steps: int):
    common = dict(output_dir=str(out_dir), max_steps=cfg["max_steps"], seed=seed, data_seed=seed,
                  learning_rate=cfg[method]["learning_rate"],
                  per_device_train_batch_size=cfg[method]["batch_size"],
                  gradient_accumulation_steps=cfg[method]["gradient_accumulation_steps"],
                  lr_scheduler_type=cfg[method]["lr_scheduler_type"],
                  warmup_steps=cfg[method]["warmup_steps"], weight_decay=0.0,
                  max_grad_norm=cfg[method]["max_grad_norm"], save_strategy="steps", save_steps=save_steps,
                  save_total_limit=1, logging_steps=1, report_to="none", disable_tqdm=True,
                  use_cpu=not device.startswith("cuda"), bf16=cfg["precision"] == "bf16",
                  dataloader_num_workers=0, remove_unused_columns=False)
    if method == "grpo":
        from trl import GRPOConfig

        g = cfg["grpo"]
        return GRPOConfig(**common, num_generations=g["num_generations"],
                          max_completion_length=g["max_completion_length"], temperature=g["temperature"],
                          beta=g["beta"], loss_type=g["loss_type"])
    from trl import SFTConfig

    return SFTConfig(**common, max_length=cfg["sft"]["max_length"], completion_only_loss=True,
                     packing=False)


def _save_callback(masks, eval_dir: Path, eval_at: set[int], provenance: dict):
    from transformers import TrainerCallback

    from .io import save_arrays

    class SaveTrainable(TrainerCallback):
        """At each evaluation step: save the trainable elements, and a full checkpoint too, so
        that a resumed run never needs to retrain past a saved evaluation step."""

        def __init__(self):
            self.model = None

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.model = model

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if step in eval_at:
                values = trainable_values(model or self.model, masks)
                save_arrays(eval_dir / f"step{step}.npz", dict(provenance, step=step),
                            **{f"value:{k}": v for k, v in values.items()})
                control.should_save = True
            return control

    return SaveTrainable()


def last_checkpoint(scratch: Path) -> str | None:
    """The newest complete trainer checkpoint in ``scratch`` (``checkpoint-N`` with its trainer
    state written last), or None."""
    done = [p for p in scratch.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[1]))) if done else None


def train_run(model, tokenizer, run: dict, masks: dict, data: dict, cfg: dict, scratch: Path,
              steps: list[int], device: str, checkpoint_every: int, provenance: dict) -> dict:
    """Train one run in place with trl (GRPO or SFT), saving the trainable elements at ``steps``
    into ``scratch/eval`` and resuming from the last checkpoint in ``scratch`` when there is
    one. Returns the trainer's log history and the resume point."""
    from datasets import Dataset

    scratch.mkdir(parents=True, exist_ok=True)
    eval_dir = scratch / "eval"
    eval_dir.mkdir(exist_ok=True)
    method = run["method"]
    seed = run_seed(cfg["seed"], run)
    args = _trainer_args(method, cfg, scratch, seed, device, checkpoint_every)
    callback = _save_callback(masks, eval_dir, set(steps), provenance)
    if method == "grpo":
        from trl import GRPOTrainer

        trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[correctness_reward],
                              args=args, train_dataset=Dataset.from_list(data["grpo"]), callbacks=[callback])
    else:
        from trl import SFTTrainer

        trainer = SFTTrainer(model=model, processing_class=tokenizer, args=args,
                             train_dataset=Dataset.from_list(data["sft"]), callbacks=[callback])
    resume = last_checkpoint(scratch)
    log.info("%s: %s", run_label(run), f"resuming from {resume}" if resume else "starting")
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    log.info("%s: %d steps in %.1f s", run_label(run), trainer.state.global_step, time.perf_counter() - start)
    history = [{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in trainer.state.log_history]
    return dict(history=history, resumed_from=resume)


def finish_run(scratch: Path) -> None:
    """Drop a finished run's trainer checkpoints (the full weights and optimiser state), keeping
    its evaluation files and its ``done.json``."""
    for path in scratch.glob("checkpoint-*"):
        shutil.rmtree(path, ignore_errors=True)


def write_done(scratch: Path, record: dict) -> None:
    (scratch / "done.json").write_text(json.dumps(record, sort_keys=True, default=str))


def read_done(scratch: Path) -> dict | None:
    path = scratch / "done.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None
