"""Time RUBY on 200 (candidate, reference) pairs of 5-15-statement Python functions, and compare
our graph edit distance (isomorphism check, else bipartite upper bound) with networkx's.

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_ruby [--pairs 200] [--nx 20]

Candidates are the references with one to three small edits (rename a variable, change an
operator or constant, drop or duplicate a statement, swap two lines) or another reference entirely.
Times are CPU time (time.process_time: steadier than wall time on a shared machine).
Prints the mean time per pair and the levels reached (with the analysis cache cleared before each
pair, and as ruby_corpus runs: the 10 references analysed once); then, on the first --nx graph-level pairs,
the time of networkx's first `optimize_graph_edit_distance` answer and of its exact GED (capped
at 2 s a pair), against ours.
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import time

REFERENCES = [
    '''def total_positive(xs):
    total = 0
    for x in xs:
        if x > 0:
            total += x
    return total''',
    '''def fizzbuzz(n):
    out = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            out.append("FizzBuzz")
        elif i % 3 == 0:
            out.append("Fizz")
        elif i % 5 == 0:
            out.append("Buzz")
        else:
            out.append(str(i))
    return out''',
    '''def is_prime(n):
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True''',
    '''def running_max(values):
    best = None
    result = []
    for v in values:
        if best is None or v > best:
            best = v
        result.append(best)
    return result''',
    '''def count_words(text):
    counts = {}
    for word in text.lower().split():
        word = word.strip(".,!?")
        if not word:
            continue
        counts[word] = counts.get(word, 0) + 1
    return counts''',
    '''def binary_search(xs, target):
    lo = 0
    hi = len(xs) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if xs[mid] == target:
            return mid
        if xs[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1''',
    '''def flatten(nested):
    flat = []
    stack = list(reversed(nested))
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            flat.append(item)
    return flat''',
    '''def safe_div(a, b):
    try:
        q = a / b
    except ZeroDivisionError:
        q = None
    else:
        q = round(q, 3)
    return q''',
    '''def pairs_summing_to(xs, k):
    seen = set()
    pairs = []
    for x in xs:
        y = k - x
        if y in seen:
            pairs.append((min(x, y), max(x, y)))
        seen.add(x)
    pairs.sort()
    return pairs''',
    '''def rle(s):
    if not s:
        return ""
    out = []
    prev = s[0]
    n = 1
    for ch in s[1:]:
        if ch == prev:
            n += 1
        else:
            out.append(prev + str(n))
            prev = ch
            n = 1
    out.append(prev + str(n))
    return "".join(out)''',
]

_OPS = [("+", "-"), ("<=", "<"), ("==", "!="), ("0", "1"), ("//", "/"), (">", ">=")]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _mutate(code: str, rng: random.Random) -> str:
    """One small edit that keeps the code parsable, except "truncate" (a cut-off generation)."""
    lines = code.split("\n")
    kind = rng.choice(["rename", "op", "op", "drop", "dup", "swap", "truncate"])
    # Simple statements whose removal or copy keeps the indentation valid.
    simple = [i for i in range(1, len(lines)) if not lines[i].rstrip().endswith(":")
              and not lines[i - 1].rstrip().endswith(":")]
    if kind == "rename":
        names = sorted(set(re.findall(r"\b([a-z_]\w*)\s*=[^=]", code)))
        if names:
            old = rng.choice(names)
            return re.sub(rf"\b{old}\b", old + "_2", code)
    if kind == "op":
        present = [(a, b) for a, b in _OPS if a in code]
        if present:
            a, b = rng.choice(present)
            return code.replace(a, b, 1)
    if kind == "drop" and simple:
        i = rng.choice(simple)
        return "\n".join(lines[:i] + lines[i + 1:])
    if kind == "dup" and simple:
        i = rng.choice(simple)
        return "\n".join(lines[:i + 1] + [lines[i]] + lines[i + 1:])
    swappable = [i for i in simple if i + 1 < len(lines) and _indent(lines[i]) == _indent(lines[i + 1])
                 and not lines[i + 1].rstrip().endswith(":")]
    if kind == "swap" and swappable:
        i = rng.choice(swappable)
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
        return "\n".join(lines)
    if kind == "truncate":
        return code[:rng.randint(len(code) // 3, len(code) - 1)]
    return code


def make_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        ref = rng.choice(REFERENCES)
        if rng.random() < 0.15:
            cand = rng.choice(REFERENCES)  # unrelated (or, by chance, identical)
        else:
            cand = ref
            for _ in range(rng.randint(1, 3)):
                cand = _mutate(cand, rng)
        pairs.append((cand, ref))
    return pairs


def bench_ruby(pairs, cached: bool) -> None:
    from src.metrics.ruby import _cached_pdg, _cached_tree, ruby

    def clear():
        _cached_tree.cache_clear()
        _cached_pdg.cache_clear()

    ruby(REFERENCES[0], REFERENCES[1])  # warm-up: imports (scipy, Levenshtein)
    ruby("return 1", "return 2")  # and apted
    clear()
    by_level: dict[str, list[float]] = {}
    for cand, ref in pairs:
        if not cached:
            clear()
        t = time.process_time()
        _, level = ruby(cand, ref)
        by_level.setdefault(level, []).append(time.process_time() - t)
    times = [t for ts in by_level.values() for t in ts]
    what = "references' analysis cached, as in ruby_corpus" if cached else "nothing cached"
    print(f"ruby, {what}: {len(pairs)} pairs, mean {1000 * statistics.mean(times):.2f} ms/pair, "
          f"median {1000 * statistics.median(times):.2f}, max {1000 * max(times):.2f}")
    for level, ts in sorted(by_level.items()):
        print(f"  {level}: {len(ts)} pairs, mean {1000 * statistics.mean(ts):.2f} ms")


def bench_ged(pairs, limit: int) -> None:
    import networkx as nx

    from src.metrics.ruby import build_pdg, graph_edit_distance

    def nm(a, b):
        return a["label"] == b["label"]

    def em(a, b):
        return a["dep"] == b["dep"]

    graphs = [(build_pdg(c), build_pdg(r)) for c, r in pairs]
    graphs = [(a, b) for a, b in graphs if a is not None and b is not None][:limit]
    ours_t, first_t, gaps, first_gaps = [], [], [], []
    for g1, g2 in graphs:
        t = time.process_time()
        ours = graph_edit_distance(g1, g2)
        ours_t.append(time.process_time() - t)
        t = time.process_time()
        first = next(nx.optimize_graph_edit_distance(g1, g2, node_match=nm, edge_match=em))
        first_t.append(time.process_time() - t)
        best = nx.graph_edit_distance(g1, g2, node_match=nm, edge_match=em, upper_bound=ours, timeout=2)
        if best is not None:  # None: nothing below ours within 2 s
            gaps.append(ours - best)
            first_gaps.append(first - best)
    sizes = [a.number_of_nodes() + b.number_of_nodes() for a, b in graphs]
    print(f"GED on {len(graphs)} graph pairs ({min(sizes)}-{max(sizes)} nodes per pair): "
          f"ours mean {1000 * statistics.mean(ours_t):.2f} ms; networkx first answer mean "
          f"{1000 * statistics.mean(first_t):.1f} ms, max {1000 * max(first_t):.1f} ms")
    if gaps:
        print(f"  excess over networkx's GED (2 s cap, so not always proven optimal), {len(gaps)} pairs: "
              f"ours mean {statistics.mean(gaps):.2f} max {max(gaps):.0f} "
              f"(equal on {sum(g == 0 for g in gaps)}); "
              f"networkx first answer mean {statistics.mean(first_gaps):.2f} max {max(first_gaps):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--nx", type=int, default=20, help="graph pairs to compare with networkx (0: skip)")
    args = parser.parse_args()
    pairs = make_pairs(args.pairs)
    bench_ruby(pairs, cached=False)
    bench_ruby(pairs, cached=True)
    if args.nx:
        bench_ged(pairs, args.nx)


if __name__ == "__main__":
    main()
