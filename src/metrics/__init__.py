"""Evaluation metrics, pure logic with no torch at import time (BERTScore loads it when called).

- passk.py: unbiased pass@k, per-task tables, the standard error of pass@1, policy deltas.
- text.py: code-aware tokenisation, function bodies; BLEU, ROUGE-L, CodeBLEU, BERTScore.
- ruby.py: RUBY (PDG / AST / token similarity, after Tran et al. 2019), with a Python PDG builder;
  ruby_pair scores whole functions without docstrings.
- quality.py: syntax validity, cyclomatic complexity, style warnings per 100 lines.

Import the submodule you need (`from src.metrics.passk import pass_at_k`): nothing is re-exported,
so importing one metric does not pull in the others' libraries.
"""
