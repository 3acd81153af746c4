"""Stage functions behind the rule scripts, one module per stage of the DAG.

Each module owns its stage's file handling: it reads the stage's inputs (through
:mod:`synergy_core.io`), calls the pure computations, and writes the outputs the rule declares.
Functions take file paths and plain config dicts (no Snakemake objects), so every stage runs
and is tested without Snakemake.

=========  ==========================  ==============================  ==============================
stage      rules (workflow/rules/)     computations                    tests (tests/)
=========  ==========================  ==============================  ==============================
extract    extract.smk                 extract, hooks, models          test_extract.py, test_hooks.py
phiid      phiid.smk                   phiid.*                         test_phiid.py, test_stages.py
rank       rank.smk                    ranking                         test_ranking.py, test_stages.py
ablate     ablate.smk, stats.smk       ablation, ablation_curves       test_ablation.py, test_stats.py
stats      stats.smk                   stats, graphs                   test_stats.py, test_graphs.py
plots      plots.smk                   plots                           test_figures.py
summary    stats.smk (rule summary)    report_tables                   test_summary.py
compare    compare.smk                 comparisons                     test_stages.py
perturb    perturb.smk                 tasks, scoring, perturb,        test_perturbation.py,
                                       perturbation_plan,              test_perturbation_stats.py
                                       perturbation_stats
finetune   finetune.smk                finetune, finetune_train,       test_finetune.py,
                                       finetune_plan, finetune_stats   test_finetune_stats.py
=========  ==========================  ==============================  ==============================

The ablation's statistics (rule ablation_stats) live in ``stages/ablation_stats.py`` so that
their code hash does not cover the profile statistics; likewise the perturbation's merge and
statistics (no torch) live in ``stages/perturbation_stats.py``, apart from its GPU part, and the
fine-tuning stage's data, merge and statistics in ``stages/finetune_stats.py``, apart from its
training and evaluation parts (``stages/finetune.py``).
This file imports nothing, so a rule's code hash (derived from its script's imports) covers
only the stage it runs. Every stage's calibration simulations are in ``tests/calib_*.py``
(tests: ``tests/test_calibration_*.py``).
"""
