"""Evaluation of trained models: held-out losses, multiple-choice tasks and their scoring.

- `heldout`: each objective's held-out loss (the curves' `held_out_*` columns).
- `tasks`: the task file format (JSONL) and the built-in tasks' builders; `task_registry`:
  the tasks by name (`register_task` adds one). Both torch-free: the command line's help
  lists the registered tasks.
- `scoring`: the scoring modes (ar, md, prefix) and scoring a continuation in one;
  `multiple_choice`: accuracy over a task's items in each mode.
- `loaded`: a finished run folder, loaded (`load_run`): config, weights, tokenizer, corpus.
- `run`: `evaluate_run`, every configured task and mode of a finished run folder.
- `harness`, `lm_eval_adapter`: lm-evaluation-harness tasks in the same modes.
"""
