"""Rule finetune_eval: greedy answers of one model's share of the checkpoints (scored by the merge)."""
from synergy_core.finetune_plan import plan_runs, run_label
from synergy_core.runtime import start_rule
from synergy_core.stages.finetune_eval import run_eval_part

start_rule(snakemake, uses_torch=True)
p = snakemake.params
runs = plan_runs(p.finetune["methods"], p.finetune["n_seeds"])
# run i was trained by training part i % n_train_parts (rule finetune_train)
parts = {k[len("train_part_"):]: v for k, v in snakemake.input.items() if k.startswith("train_part_")}
train_dirs = {run_label(r): parts[str(i % p.n_train_parts)] for i, r in enumerate(runs)
              if str(i % p.n_train_parts) in parts}
run_eval_part(snakemake.input.data, snakemake.input.heads, train_dirs, snakemake.output[0], p.spec,
              p.finetune, int(snakemake.wildcards.part), p.n_parts, p.device, p.code)
