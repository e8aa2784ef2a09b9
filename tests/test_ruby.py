"""RUBY: the PDG builder edge by edge, and scores at each level computed by hand from the definitions."""
import networkx as nx
import pytest

from src.metrics.ruby import build_pdg, graph_edit_distance, ruby, ruby_corpus

REF = """def total_positive(xs):
    total = 0
    for x in xs:
        if x > 0:
            total += x
    return total
"""
# Its PDG: 6 nodes, 10 edges, |G| = 16.
REF_EDGES = {
    (0, 1): "control",        # def -> total = 0
    (0, 2): "control+data",   # def -> for (body; parameter xs)
    (0, 5): "control",        # def -> return
    (2, 3): "control+data",   # for -> if (body; x)
    (3, 4): "control",        # if -> total += x
    (1, 4): "data",           # total
    (1, 5): "data",           # total (the loop may run zero times)
    (2, 4): "data",           # x
    (4, 4): "data",           # total, carried round the loop
    (4, 5): "data",           # total
}


def edges(g):
    return {(u, v): d["dep"] for u, v, d in g.edges(data=True)}


def test_pdg_nodes_and_edges():
    g = build_pdg(REF)
    labels = [g.nodes[n]["label"] for n in sorted(g.nodes)]
    assert labels == [
        "FunctionDef: def total_positive(xs):",
        "Assign: total = 0",
        "For: for x in xs:",
        "If: if x > 0:",
        "AugAssign: total += x",
        "Return: return total",
    ]
    assert edges(g) == REF_EDGES
    assert g.edges[4, 5]["vars"] == ("total",)


def test_pdg_loop_back_edge_and_break():
    code = "i = 0\nwhile i < 10:\n    if i == 5:\n        break\n    i += 1\nprint(i)\n"
    # 0 i = 0 | 1 while | 2 if | 3 break | 4 i += 1 | 5 print(i); both defs of i reach every use,
    # print(i) through the loop exit and through the break.
    assert edges(build_pdg(code)) == {
        (1, 2): "control", (1, 4): "control", (2, 3): "control",
        (0, 1): "data", (0, 2): "data", (0, 4): "data", (0, 5): "data",
        (4, 1): "data", (4, 2): "data", (4, 4): "data", (4, 5): "data",
    }


def test_pdg_else_branch_scopes_and_mutation():
    assert edges(build_pdg("if a:\n    b = 1\nelse:\n    b = 2\nprint(b)\n")) == {
        (0, 1): "control", (0, 2): "control-else", (1, 3): "data", (2, 3): "data"}
    # A module-level name read inside a function links to its definition; a parameter to its def.
    assert edges(build_pdg("import math\ndef f(r):\n    return math.pi * r\n")) == {
        (0, 2): "data", (1, 2): "control+data"}
    # out.append(...) changes out without replacing it: both definitions reach print(out).
    assert edges(build_pdg("out = []\nout.append(1)\nprint(out)\n")) == {
        (0, 1): "data", (0, 2): "data", (1, 2): "data"}


def test_pdg_try_except():
    g = build_pdg("try:\n    q = 1 / n\nexcept ZeroDivisionError as e:\n    q = str(e)\n"
                  "finally:\n    done = True\nprint(q)\n")
    assert g.nodes[2]["label"] == "ExceptHandler: except ZeroDivisionError as e:"
    assert edges(g) == {(0, 1): "control", (0, 2): "control", (0, 4): "control",
                        (2, 3): "control+data", (1, 5): "data", (3, 5): "data"}


def test_no_pdg():
    assert build_pdg("def f(:") is None             # does not parse
    assert build_pdg("return total") is None        # parses, but `return` outside a function
    assert build_pdg("# only a comment\n") is None  # no statement


def test_identical_is_one_at_graph_level():
    assert ruby(REF, REF) == (1.0, "graph")
    # Formatting and comments do not matter: labels are ast.unparse forms.
    assert ruby(REF.replace("if x > 0:", "if (x>0):  # positive"), REF) == (1.0, "graph")


def test_one_changed_statement():
    # `total -= x` has the same dependences: one node relabelled, GED 1 (exact: the graphs differ).
    assert ruby(REF.replace("total += x", "total -= x"), REF) == (pytest.approx(1 - 1 / 32), "graph")


def test_one_renamed_variable():
    renamed = (REF.replace("total =", "acc =").replace("total +=", "acc +=")
               .replace("return total", "return acc"))
    # Three statements mention it: three relabels, edges unchanged; GED 3 (each changed label needs one edit).
    assert ruby(renamed, REF) == (pytest.approx(1 - 3 / 32), "graph")


def test_dropped_statement():
    cand = REF.replace("        if x > 0:\n            total += x\n", "        total += x\n")
    # Candidate: 5 nodes, 8 edges (|G| = 13). Delete the `if` node (1) and its edges for->if,
    # if->total+= (2); the data edge for->total+= becomes control+data (relabel, 1): GED 4.
    g_c, g_r = build_pdg(cand), build_pdg(REF)
    assert (g_c.number_of_nodes(), g_c.number_of_edges()) == (5, 8)
    assert graph_edit_distance(g_c, g_r) == 4

    def nm(a, b):
        return a["label"] == b["label"]

    def em(a, b):
        return a["dep"] == b["dep"]

    assert nx.graph_edit_distance(g_c, g_r, node_match=nm, edge_match=em) == 4  # exact agrees
    assert ruby(cand, REF) == (pytest.approx(1 - 4 / 29), "graph")


def test_string_level_for_unparsable_candidate():
    # "x = 1\n" -> x = 1 <NEWLINE>; "x = (1" fails Python's tokenizer -> regex: x = ( 1.
    # Levenshtein: insert "(", delete "<NEWLINE>" = 2, over max length 4.
    assert ruby("x = (1\n", "x = 1\n") == (pytest.approx(0.5), "string")


def test_tree_level_when_code_parses_but_does_not_compile():
    # `return` outside a function parses but does not compile: no PDG, so TRS.
    # Module-Return-Name:total (3 nodes) vs Module-Return-BinOp(Name:total, Add, Constant:1) (6 nodes):
    # insert BinOp, Add, Constant:1 -> TED 3, TRS = 1 - 3/9.
    assert ruby("return total", "return total + 1") == (pytest.approx(2 / 3), "tree")
    # One side is enough to drop to the tree level.
    assert ruby("return total", REF)[1] == "tree"
    assert ruby("", "") == (1.0, "tree")


def test_ruby_corpus():
    out = ruby_corpus([REF, "return total", "x = (1\n"], [REF, "return total + 1", "x = 1\n"])
    assert out["levels"] == {"graph": 1, "tree": 1, "string": 1}
    assert out["ruby"] == pytest.approx((1.0 + 2 / 3 + 0.5) / 3)
    assert ruby_corpus([], []) == {"ruby": 0.0, "levels": {"graph": 0, "tree": 0, "string": 0}}
    with pytest.raises(ValueError):
        ruby_corpus(["a"], [])


def test_scores_in_unit_interval_for_unrelated_programs():
    other = "def f(s):\n    words = s.split()\n    return len(words)\n"
    score, level = ruby(other, REF)
    assert level == "graph" and 0.0 <= score < 0.5
