"""RLHF for code generation: DVC stages prepare -> sft -> reward -> ppo_or_dpo -> evaluate."""
