"""The composite reward for code completions: syntax validity, execution (1 when every assert passes
in the sandbox, or the fraction passed), semantic similarity to the reference and the reward model's
preference score.

Contract (as TRL's GRPO reward functions): `reward(prompts, completions, **task_columns) -> list[float]`,
where task_columns hold `test`, `entry_point` and `canonical_solution` per completion. A prompt without
a reference (canonical_solution "", the `rl` split) has no semantic score: the semantic function returns
None for it, which TRL's GRPO leaves out of its weighted sum (nansum); `__call__` (PPO) scales the other
weights up so that the row's total weight is unchanged. Pure Python: the reward model is injected as a
scorer callable, so this module never imports torch.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal, Optional, Sequence

from src.generation import truncate_completion
from src.metrics.quality import syntax_valid
from src.metrics.text import body
from src.params import bounded
from src.sandbox import Job, SandboxParams, execute

COMPONENTS = ("syntax", "execution", "semantic", "preference")
# Only a program that ran to completion earns execution credit; a timeout, a crash of the harness
# child, a memory blow-up or a forbidden action scores 0 even if some asserts had passed.
CREDITED = ("passed", "failed", "runtime_error")


@dataclasses.dataclass
class CompositeParams:
    """Weights of the components (0 = not computed), how execution is credited and how the semantic
    one is measured."""
    syntax: float = bounded(0)
    execution: float = bounded(0)
    semantic: float = bounded(0)
    preference: float = bounded(0)
    # binary: 1 iff the program passed every assert; fraction: the share of asserts passed
    execution_credit: Literal["binary", "fraction"]
    semantic_metric: Literal["codebleu", "bertscore"]
    codebleu_weights: Optional[list[float]]   # ngram, weighted ngram, syntax, dataflow; null = evaluate's
    bertscore_model: str            # `minilm` = the packaged all-MiniLM-L6-v2; or a hub id / folder
    bertscore_layers: int = bounded(1)
    bertscore_batch_size: int = bounded(1)


class CompositeReward:
    """Weighted sum of the components; a component whose weight is 0 is never computed.

    `last` holds, per component, the values of the latest call (for per-step logging); a row without
    a value (semantic, no reference) is left out of its list.
    """

    def __init__(self, params: CompositeParams, sandbox: SandboxParams,
                 preference_scorer: Callable[[list[str]], list[float]] | None = None, device: str = "cpu"):
        self.w = {c: getattr(params, c) for c in COMPONENTS}
        self.p = params
        if params.semantic and params.semantic_metric == "codebleu" and params.codebleu_weights is None:
            raise ValueError("codebleu_weights must be resolved (the stage sets evaluate's) before scoring")
        self.device = device  # where BERTScore runs: the stage's own device
        self.sandbox = sandbox
        self.preference_scorer = preference_scorer
        if self.w["preference"] and preference_scorer is None:
            raise ValueError("a preference weight needs a reward-model scorer")
        self.last: dict[str, list[float]] = {}
        self.__name__ = "composite"  # TRL names reward functions by __name__

    def syntax(self, prompts, completions, **_) -> list[float]:
        return [float(syntax_valid(p + c)) for p, c in zip(prompts, completions)]

    def execution(self, prompts, completions, test, entry_point, **_) -> list[float]:
        jobs = [Job(p, c, t, e) for p, c, t, e in zip(prompts, completions, test, entry_point)]
        results = execute(jobs, self.sandbox)
        if self.p.execution_credit == "binary":
            return [float(r.status == "passed") for r in results]
        return [r.score if r.status in CREDITED else 0.0 for r in results]

    def semantic(self, prompts, completions, canonical_solution, **_) -> list[float | None]:
        """Similarity of each body to its reference's; None where the task has no reference."""
        out: list[float | None] = [None] * len(completions)
        keep = [i for i, r in enumerate(canonical_solution) if r.strip()]
        cands = [body(completions[i]) for i in keep]
        refs = [body(canonical_solution[i]) for i in keep]
        if self.p.semantic_metric == "bertscore":
            from src.metrics.text import bertscore_per_sample
            scores = bertscore_per_sample(cands, refs, self.p.bertscore_model, self.p.bertscore_layers,
                                          self.p.bertscore_batch_size, self.device) if keep else []
        else:
            from src.metrics.text import codebleu
            weights = tuple(self.p.codebleu_weights)
            scores = [codebleu([c], [r], weights) if c.strip() else 0.0 for c, r in zip(cands, refs)]
        for i, s in zip(keep, scores):
            out[i] = s
        return out

    def preference(self, prompts, completions, **_) -> list[float]:
        # the reward model's logit squashed to (0, 1), the scale of the other components
        return [1 / (1 + math.exp(-s)) for s in self.preference_scorer([p + c for p, c in zip(prompts, completions)])]

    def components(self, prompts: Sequence[str], completions: Sequence[str], **cols) -> dict[str, list[float]]:
        # a trainer's raw sample may run past the function body: score only the body, as evaluate does
        completions = [truncate_completion(c) for c in completions]
        return {c: getattr(self, c)(list(prompts), completions, **cols) for c in COMPONENTS if self.w[c]}

    def __call__(self, prompts, completions, **cols) -> list[float]:
        """The weighted sum per row; where a component has no value (None), the others' weights are
        scaled up to the same total weight. A row with no value at all scores 0.0."""
        parts = self.components(prompts, completions, **cols)
        self.last = {name: [v for v in values if v is not None] for name, values in parts.items()}
        full = sum(self.w[name] for name in parts)
        total = []
        for i in range(len(completions)):
            scored = [(self.w[name], values[i]) for name, values in parts.items() if values[i] is not None]
            weight = sum(w for w, _ in scored)
            total.append(sum(w * v for w, v in scored) * full / weight if weight else 0.0)
        return total

    def trl_reward_funcs(self) -> tuple[list[Callable], list[float]]:
        """One function per non-zero component with its weight, so TRL logs each component per step."""
        funcs, weights = [], []
        for name in COMPONENTS:
            if self.w[name]:
                f = getattr(self, name)

                def fn(prompts, completions, _f=f, **cols):
                    return _f(list(prompts), [truncate_completion(c) for c in completions], **cols)
                fn.__name__ = name
                funcs.append(fn)
                weights.append(self.w[name])
        return funcs, weights
