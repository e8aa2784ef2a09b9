"""Seeded generator of compositional Python function-writing tasks, in human-eval format.

Tasks are chains of primitive operations (filters, maps, reducers, sorts, string transforms,
counters, word and dict operations, conditions, recursions) drawn from a small library, each with
a code fragment, several docstring paraphrases and a pure-Python reference implementation.
Level 1 is one operation, level 2 chains two, level 3 chains three (or a condition plus a map inside
a loop, a filtered dict aggregation, an if/elif chain with computed results, ...).

Expected test values come from the reference implementations, never from the canonical code, so a
wrong code fragment is caught by running the canonical solutions (tests/test_tasks.py does). A task
is kept only if every operation in its chain changes the output on some test input.

Held-out generalisation: a seeded share of the level-2/3 operation *combinations* of every family
never appears in train (val/test draw from all combinations; the rl prompt pool may or may not), and
one whole family can be held out.
"""
from __future__ import annotations

import builtins
import copy
import functools
import itertools
import keyword
import random
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

LEVELS = (1, 2, 3)


# ---------------------------------------------------------------------------------------------
# Primitive operations
# ---------------------------------------------------------------------------------------------

def _fill(template: str, values: dict) -> str:
    """Replace {name} for the names in values; other braces (dict literals) are left alone."""
    for k, v in values.items():
        template = template.replace("{" + k + "}", str(v))
    return template


def _no_consts(r: random.Random) -> dict:
    return {}


def _k(lo: int, hi: int) -> Callable[[random.Random], dict]:
    return lambda r: {"k": r.randint(lo, hi)}


def _pick(name: str, options: str | list) -> Callable[[random.Random], dict]:
    return lambda r: {name: r.choice(options)}


def _lo_hi(r: random.Random) -> dict:
    lo = r.randint(-3, 6)
    return {"lo": lo, "hi": lo + r.randint(2, 8)}


@dataclass(frozen=True)
class Cond:
    """A predicate on one element: code over {v}, plural nouns (filters), verb phrases (if/search)."""
    id: str
    expr: str
    nouns: tuple[str, ...]
    negs: tuple[str, ...]          # nouns for the complement: "remove the {neg}" keeps the rest
    adjs: tuple[str, ...]          # "{x} is even"
    fn: Callable[[Any, dict], bool]
    consts: Callable[[random.Random], dict] = _no_consts
    slug: str = ""


@dataclass(frozen=True)
class Map:
    """A function of one element: code over {v}, phrases for lists ("each") and scalars ("it")."""
    id: str
    expr: str
    each: tuple[str, ...]          # "square each {item}"
    it: tuple[str, ...]            # "square {a}"
    nouns: tuple[str, ...]         # "{a} squared"
    fn: Callable[[Any, dict], Any]
    consts: Callable[[random.Random], dict] = _no_consts
    var: str = "mapped"
    slug: str = ""


INT_CONDS = {c.id: c for c in [
    Cond("even", "{v} % 2 == 0", ("even {items}",), ("odd {items}",), ("is even",),
         lambda v, c: v % 2 == 0, slug="even"),
    Cond("odd", "{v} % 2 == 1", ("odd {items}",), ("even {items}",), ("is odd",),
         lambda v, c: v % 2 == 1, slug="odd"),
    Cond("pos", "{v} > 0", ("positive {items}",), ("{items} that are zero or negative",), ("is positive",),
         lambda v, c: v > 0, slug="positive"),
    Cond("neg", "{v} < 0", ("negative {items}",), ("non-negative {items}",), ("is negative",),
         lambda v, c: v < 0, slug="negative"),
    Cond("gt", "{v} > {k}", ("{items} greater than {k}", "{items} above {k}"), ("{items} that are at most {k}",),
         ("is greater than {k}", "is above {k}"), lambda v, c: v > c["k"], _k(-2, 9), slug="above"),
    Cond("lt", "{v} < {k}", ("{items} less than {k}", "{items} below {k}"), ("{items} that are at least {k}",),
         ("is less than {k}", "is below {k}"), lambda v, c: v < c["k"], _k(-2, 9), slug="below"),
    Cond("div", "{v} % {k} == 0", ("multiples of {k}", "{items} divisible by {k}"), ("{items} not divisible by {k}",),
         ("is divisible by {k}", "is a multiple of {k}"), lambda v, c: v % c["k"] == 0, _k(3, 5), slug="multiples"),
    Cond("ndiv", "{v} % {k} != 0", ("{items} not divisible by {k}",), ("multiples of {k}",),
         ("is not divisible by {k}",), lambda v, c: v % c["k"] != 0, _k(3, 5), slug="nonmultiples"),
    Cond("between", "{lo} <= {v} <= {hi}",
         ("{items} from {lo} to {hi} inclusive", "{items} between {lo} and {hi} (inclusive)"), (),
         ("is between {lo} and {hi} (inclusive)",), lambda v, c: c["lo"] <= v <= c["hi"], _lo_hi, slug="between"),
    Cond("digit", "abs({v}) % 10 == {k}", ("{items} whose last digit is {k}", "{items} ending in the digit {k}"), (),
         ("ends in the digit {k}",), lambda v, c: abs(v) % 10 == c["k"], _k(0, 9), slug="ending"),
]}

INT_MAPS = {m.id: m for m in [
    Map("sq", "{v} * {v}", ("square each {item}", "replace every {item} by its square"), ("square {a}",),
        ("{a} squared", "the square of {a}"), lambda v, c: v * v, var="squares", slug="squared"),
    Map("add", "{v} + {k}", ("add {k} to each {item}", "increase every {item} by {k}"),
        ("add {k} to {a}", "increase {a} by {k}"), ("{a} plus {k}",), lambda v, c: v + c["k"], _k(1, 9),
        var="shifted", slug="plus"),
    Map("sub", "{v} - {k}", ("subtract {k} from each {item}", "decrease every {item} by {k}"),
        ("subtract {k} from {a}", "decrease {a} by {k}"), ("{a} minus {k}",), lambda v, c: v - c["k"], _k(1, 9),
        var="lowered", slug="minus"),
    Map("mul", "{v} * {k}", ("multiply each {item} by {k}", "scale every {item} by {k}"),
        ("multiply {a} by {k}",), ("{a} times {k}",), lambda v, c: v * c["k"], _k(2, 5), var="scaled", slug="times"),
    Map("neg", "-{v}", ("negate each {item}", "flip the sign of every {item}"), ("negate {a}", "flip the sign of {a}"),
        ("the negation of {a}",), lambda v, c: -v, var="negated", slug="negated"),
    Map("abs", "abs({v})", ("take the absolute value of each {item}", "replace every {item} by its absolute value"),
        ("take the absolute value of {a}",), ("the absolute value of {a}",), lambda v, c: abs(v),
        var="magnitudes", slug="abs"),
    Map("fdiv", "{v} // {k}", ("floor-divide each {item} by {k}", "divide every {item} by {k}, rounding down"),
        ("floor-divide {a} by {k}", "divide {a} by {k}, rounding down"), ("{a} divided by {k}, rounded down",),
        lambda v, c: v // c["k"], _k(2, 4), var="quotients", slug="div"),
    Map("mod", "{v} % {k}", ("replace each {item} by its remainder modulo {k}", "take every {item} modulo {k}"),
        ("take {a} modulo {k}",), ("{a} modulo {k}", "the remainder of {a} modulo {k}"),
        lambda v, c: v % c["k"], _k(2, 5), var="remainders", slug="mod"),
    Map("last", "abs({v}) % 10", ("replace each {item} by its last digit",), ("take the last digit of {a}",),
        ("the last digit of {a}",), lambda v, c: abs(v) % 10, var="last_digits", slug="last_digit"),
    Map("maxk", "max({v}, {k})", ("raise every {item} below {k} up to {k}",), ("raise {a} up to {k} if it is smaller",),
        ("the larger of {a} and {k}",), lambda v, c: max(v, c["k"]), _k(-2, 6), var="clipped", slug="floor"),
    Map("mink", "min({v}, {k})", ("cap every {item} at {k}",), ("cap {a} at {k}",), ("the smaller of {a} and {k}",),
        lambda v, c: min(v, c["k"]), _k(0, 9), var="capped", slug="capped"),
]}

WORD_CONDS = {c.id: c for c in [
    Cond("longer", "len({v}) > {k}", ("words longer than {k} characters", "words with more than {k} letters"),
         ("words of at most {k} characters",), ("is longer than {k} characters",),
         lambda v, c: len(v) > c["k"], _k(2, 5), slug="long"),
    Cond("shorter", "len({v}) <= {k}", ("words of at most {k} characters", "words with {k} letters or fewer"),
         ("words longer than {k} characters",), ("has at most {k} characters",),
         lambda v, c: len(v) <= c["k"], _k(2, 5), slug="short"),
    Cond("starts", '{v}.startswith("{c}")', ("words starting with '{c}'", "words that begin with '{c}'"), (),
         ("starts with '{c}'",), lambda v, c: v.startswith(c["c"]), _pick("c", "abcdfmorst"), slug="initial"),
    Cond("ends", '{v}.endswith("{c}")', ("words ending in '{c}'", "words whose last letter is '{c}'"), (),
         ("ends with '{c}'",), lambda v, c: v.endswith(c["c"]), _pick("c", "aeklnrst"), slug="ending"),
    Cond("contains", '"{c}" in {v}', ("words containing '{c}'", "words that contain the letter '{c}'"),
         ("words without the letter '{c}'",), ("contains '{c}'",), lambda v, c: c["c"] in v,
         _pick("c", "aeinortu"), slug="with"),
    Cond("capital", "{v}[:1].isupper()",
         ("capitalized words (first letter uppercase)", "words that start with an uppercase letter"),
         ("words that start with a lowercase letter",), ("starts with an uppercase letter",),
         lambda v, c: v[:1].isupper(), slug="capitalized"),
    Cond("lowerw", "{v}.islower()", ("words written entirely in lower case",), (), ("is all lower case",),
         lambda v, c: v.islower(), slug="lowercase"),
]}

WORD_MAPS = {m.id: m for m in [
    Map("upper", "{v}.upper()", ("convert each word to upper case", "uppercase every word"), (), (),
        lambda v, c: v.upper(), var="shouted", slug="upper"),
    Map("lower", "{v}.lower()", ("convert each word to lower case", "lowercase every word"), (), (),
        lambda v, c: v.lower(), var="lowered", slug="lower"),
    Map("rev", "{v}[::-1]", ("reverse each word", "spell every word backwards"), (), (),
        lambda v, c: v[::-1], var="flipped", slug="reversed"),
    Map("initial", "{v}[:1]", ("replace each word by its first letter", "keep only the first letter of every word"),
        (), (), lambda v, c: v[:1], var="initials", slug="initials"),
    Map("headk", "{v}[:{k}]",
        ("shorten each word to its first {k} letters", "cut every word to at most {k} characters"),
        (), (), lambda v, c: v[:c["k"]], _k(2, 3), var="heads", slug="prefixes"),
    Map("cap", "{v}.capitalize()", ("capitalize each word (first letter upper, rest lower)",), (), (),
        lambda v, c: v.capitalize(), var="capitalized", slug="capitalized"),
    Map("suffix", '{v} + "{s}"', ("add '{s}' to the end of each word", "append '{s}' to every word"), (), (),
        lambda v, c: v + c["s"], _pick("s", ["s", "ed", "!", "_x", "ly"]), var="extended", slug="suffixed"),
]}


@dataclass(frozen=True)
class Op:
    """One step of a chain: an expression over {a} (or a multi-line final block), with paraphrases."""
    id: str
    t_in: str
    t_out: str
    phrases: tuple[str, ...]
    code: str
    ref: Callable[[Any, dict], Any]
    consts: Callable[[random.Random], dict] = _no_consts
    var: str = "result"
    slug: str = ""
    returns: bool = False           # its phrases already say what is returned
    block: tuple[str, ...] = ()     # multi-line final step over {a}, ending in a return
    uses_y: bool = False            # reads the second argument {y}


def _keep(cond: Cond, t: str, elem: str, items: str) -> Op:
    code = f"[{elem} for {elem} in {{a}} if {cond.expr.replace('{v}', elem)}]"
    phrases = tuple(f"keep only the {n}" for n in cond.nouns) + tuple(f"remove the {n}" for n in cond.negs)
    phrases = tuple(_fill(p, {"items": items}) for p in phrases)
    var = {"even": "evens", "odd": "odds", "pos": "positives", "neg": "negatives"}.get(cond.id, "kept")
    return Op("keep_" + cond.id, t, t, phrases, code, lambda xs, c, f=cond.fn: [x for x in xs if f(x, c)],
              cond.consts, var=var, slug=cond.slug)


def _each(m: Map, t_in: str, t_out: str, elem: str, item: str) -> Op:
    code = f"[{m.expr.replace('{v}', elem)} for {elem} in {{a}}]"
    phrases = tuple(_fill(p, {"item": item}) for p in m.each)
    return Op("map_" + m.id, t_in, t_out, phrases, code, lambda xs, c, f=m.fn: [f(x, c) for x in xs],
              m.consts, var=m.var, slug=m.slug)


def _scalar(m: Map) -> Op:
    return Op(m.id, "int", "int", m.it, m.expr.replace("{v}", "{a}"), m.fn, m.consts, var="value", slug=m.slug)


def _index_of(cond: Cond) -> Op:
    phrases = tuple(f"return the index of the first number that {adj} (-1 if there is none)" for adj in cond.adjs)
    block = ("for i, x in enumerate({a}):", "    if " + cond.expr.replace("{v}", "x") + ":", "        return i",
             "return -1")

    def ref(xs: list, c: dict, f=cond.fn) -> int:
        return next((i for i, x in enumerate(xs) if f(x, c)), -1)
    return Op("index_" + cond.id, "ints", "int", phrases, "", ref, cond.consts, slug="index_" + cond.slug,
              returns=True, block=block)


def _spread(xs: list) -> int:
    return max(xs) - min(xs) if xs else 0


LIST_ORDER = [
    Op("sort", "ints", "ints", ("sort them in ascending order", "sort them from smallest to largest"),
       "sorted({a})", lambda xs, c: sorted(xs), var="ordered", slug="sorted"),
    Op("sortdesc", "ints", "ints", ("sort them in descending order", "sort them from largest to smallest"),
       "sorted({a}, reverse=True)", lambda xs, c: sorted(xs, reverse=True), var="ordered", slug="descending"),
    Op("reverse", "ints", "ints", ("reverse their order", "put them in reverse order"),
       "{a}[::-1]", lambda xs, c: xs[::-1], var="backwards", slug="reversed"),
    Op("unique", "ints", "ints", ("remove repeated values, keeping the first occurrence of each",
                                  "drop duplicates (keep each value's first occurrence)"),
       "list(dict.fromkeys({a}))", lambda xs, c: list(dict.fromkeys(xs)), var="unique", slug="unique"),
]
LIST_SLICE = [
    Op("take", "ints", "ints", ("keep only the first {k} of them", "take the first {k} numbers"),
       "{a}[:{k}]", lambda xs, c: xs[:c["k"]], _k(1, 4), var="head", slug="first"),
    Op("drop", "ints", "ints", ("drop the first {k} of them", "skip the first {k} numbers"),
       "{a}[{k}:]", lambda xs, c: xs[c["k"]:], _k(1, 3), var="rest", slug="rest"),
    Op("takelast", "ints", "ints", ("keep only the last {k} of them", "take the last {k} numbers"),
       "{a}[-{k}:]", lambda xs, c: xs[-c["k"]:], _k(1, 3), var="tail", slug="last"),
]
LIST_REDUCE = [
    Op("sum", "ints", "int", ("return their sum", "return the sum", "add them up and return the total"),
       "sum({a})", lambda xs, c: sum(xs), slug="sum", returns=True),
    Op("max", "ints", "int", ("return the largest one (0 if there are none)",
                              "return the maximum, or 0 if nothing is left"),
       "max({a}, default=0)", lambda xs, c: max(xs, default=0), slug="max", returns=True),
    Op("min", "ints", "int", ("return the smallest one (0 if there are none)",
                              "return the minimum, or 0 if nothing is left"),
       "min({a}, default=0)", lambda xs, c: min(xs, default=0), slug="min", returns=True),
    Op("len", "ints", "int", ("return how many there are", "return the count of numbers"),
       "len({a})", lambda xs, c: len(xs), slug="count", returns=True),
    Op("first", "ints", "int", ("return the first one, or -1 if there is none",),
       "{a}[0] if {a} else -1", lambda xs, c: xs[0] if xs else -1, slug="first", returns=True),
    Op("last", "ints", "int", ("return the last one, or -1 if there is none",),
       "{a}[-1] if {a} else -1", lambda xs, c: xs[-1] if xs else -1, slug="last", returns=True),
    Op("spread", "ints", "int", ("return the largest minus the smallest (0 if there are none)",
                                 "return the difference between the maximum and the minimum, or 0 if empty"),
       "max({a}) - min({a}) if {a} else 0", lambda xs, c: _spread(xs), slug="spread", returns=True),
    Op("distinct", "ints", "int", ("return how many distinct values there are", "count the distinct values"),
       "len(set({a}))", lambda xs, c: len(set(xs)), slug="distinct", returns=True),
]
LIST_SEARCH = [_index_of(INT_CONDS[i]) for i in ("even", "odd", "neg", "gt", "lt", "div")] + [
    Op("argmax", "ints", "int", ("return the index of the largest number (the first one on a tie, -1 if empty)",),
       "{a}.index(max({a})) if {a} else -1", lambda xs, c: xs.index(max(xs)) if xs else -1,
       slug="argmax", returns=True),
    Op("argmin", "ints", "int", ("return the index of the smallest number (the first one on a tie, -1 if empty)",),
       "{a}.index(min({a})) if {a} else -1", lambda xs, c: xs.index(min(xs)) if xs else -1,
       slug="argmin", returns=True),
]

STR_OPS = [
    Op("upper", "str", "str", ("convert {a} to upper case", "make every letter of {a} uppercase"),
       "{a}.upper()", lambda s, c: s.upper(), var="upper", slug="upper"),
    Op("lower", "str", "str", ("convert {a} to lower case", "make every letter of {a} lowercase"),
       "{a}.lower()", lambda s, c: s.lower(), var="lower", slug="lower"),
    Op("swapcase", "str", "str", ("swap the case of every letter in {a}",),
       "{a}.swapcase()", lambda s, c: s.swapcase(), var="swapped", slug="swapped"),
    Op("reverse", "str", "str", ("reverse {a}", "write {a} backwards"),
       "{a}[::-1]", lambda s, c: s[::-1], var="backwards", slug="reversed"),
    Op("novowel", "str", "str", ("remove every vowel (a, e, i, o, u in either case) from {a}",
                                 "delete the vowels (aeiou, any case) from {a}"),
       '"".join(ch for ch in {a} if ch.lower() not in "aeiou")',
       lambda s, c: "".join(ch for ch in s if ch.lower() not in "aeiou"), var="no_vowels", slug="novowels"),
    Op("nodigit", "str", "str", ("remove the digits from {a}", "delete every digit in {a}"),
       '"".join(ch for ch in {a} if not ch.isdigit())',
       lambda s, c: "".join(ch for ch in s if not ch.isdigit()), var="no_digits", slug="nodigits"),
    Op("letters", "str", "str", ("keep only the letters of {a}", "drop every character of {a} that is not a letter"),
       '"".join(ch for ch in {a} if ch.isalpha())',
       lambda s, c: "".join(ch for ch in s if ch.isalpha()), var="letters", slug="letters"),
    Op("nospace", "str", "str", ("remove the spaces from {a}", "delete all spaces in {a}"),
       '{a}.replace(" ", "")', lambda s, c: s.replace(" ", ""), var="compact", slug="nospaces"),
    Op("replace", "str", "str", ("replace every '{c1}' in {a} with '{c2}'", "change each '{c1}' in {a} into '{c2}'"),
       '{a}.replace("{c1}", "{c2}")', lambda s, c: s.replace(c["c1"], c["c2"]),
       lambda r: {"c1": r.choice("aeiorst"), "c2": r.choice("xz*-#")}, var="replaced", slug="replaced"),
    Op("remove", "str", "str", ("remove every '{c}' from {a}", "delete all occurrences of '{c}' in {a}"),
       '{a}.replace("{c}", "")', lambda s, c: s.replace(c["c"], ""), _pick("c", "aeilnorst"),
       var="removed", slug="without"),
    Op("double", "str", "str", ("repeat every character of {a} twice", "double each character of {a}"),
       '"".join(ch * 2 for ch in {a})', lambda s, c: "".join(ch * 2 for ch in s), var="doubled", slug="doubled"),
    Op("head", "str", "str", ("keep only the first {k} characters of {a}", "cut {a} to its first {k} characters"),
       "{a}[:{k}]", lambda s, c: s[:c["k"]], _k(2, 5), var="head", slug="head"),
    Op("tail", "str", "str", ("drop the first {k} characters of {a}", "remove the first {k} characters of {a}"),
       "{a}[{k}:]", lambda s, c: s[c["k"]:], _k(1, 3), var="tail", slug="tail"),
    Op("everyother", "str", "str", ("keep every other character of {a}, starting with the first",
                                    "keep the characters of {a} at even positions (0, 2, 4, ...)"),
       "{a}[::2]", lambda s, c: s[::2], var="every_other", slug="every_other"),
    Op("capitalize", "str", "str", ("capitalize {a} (first character upper case, the rest lower case)",),
       "{a}.capitalize()", lambda s, c: s.capitalize(), var="capitalized", slug="capitalized"),
    Op("append", "str", "str", ("append '{s}' to {a}", "add '{s}' at the end of {a}"),
       '{a} + "{s}"', lambda s, c: s + c["s"], _pick("s", ["!", "?", "ing", "ed", "xyz", "."]),
       var="extended", slug="suffixed"),
    Op("prepend", "str", "str", ("put '{s}' in front of {a}", "prefix {a} with '{s}'"),
       '"{s}" + {a}', lambda s, c: c["s"] + s, _pick("s", ["re", "un", "#", ">", "pre"]),
       var="prefixed", slug="prefixed"),
]
STR_COUNT = [
    Op("length", "str", "int", ("return the length of {a}", "return the number of characters in {a}"),
       "len({a})", lambda s, c: len(s), slug="length", returns=True),
    Op("vowels", "str", "int", ("return the number of vowels (aeiou, any case) in {a}",
                                "count the vowels (a, e, i, o, u in either case) in {a} and return the count"),
       'sum(1 for ch in {a} if ch.lower() in "aeiou")',
       lambda s, c: sum(1 for ch in s if ch.lower() in "aeiou"), slug="vowels", returns=True),
    Op("digits", "str", "int", ("return how many digits {a} contains", "return the number of digits in {a}"),
       "sum(1 for ch in {a} if ch.isdigit())", lambda s, c: sum(1 for ch in s if ch.isdigit()),
       slug="digit_count", returns=True),
    Op("uppers", "str", "int", ("return the number of uppercase letters in {a}",),
       "sum(1 for ch in {a} if ch.isupper())", lambda s, c: sum(1 for ch in s if ch.isupper()),
       slug="upper_count", returns=True),
    Op("nletters", "str", "int", ("return the number of letters in {a}", "return how many letters {a} contains"),
       "sum(1 for ch in {a} if ch.isalpha())", lambda s, c: sum(1 for ch in s if ch.isalpha()),
       slug="letter_count", returns=True),
    Op("count", "str", "int", ("return how many times '{c}' occurs in {a}", "count the occurrences of '{c}' in {a}"),
       '{a}.count("{c}")', lambda s, c: s.count(c["c"]), _pick("c", "aeinorst"), slug="count", returns=True),
    Op("words", "str", "int", ("return the number of words in {a} (separated by whitespace)",),
       "len({a}.split())", lambda s, c: len(s.split()), slug="word_count", returns=True),
    Op("distinct", "str", "int", ("return the number of distinct characters in {a}",),
       "len(set({a}))", lambda s, c: len(set(s)), slug="distinct", returns=True),
    Op("digitsum", "str", "int", ("return the sum of the digits in {a}", "add up the digits that appear in {a}"),
       "sum(int(ch) for ch in {a} if ch.isdigit())", lambda s, c: sum(int(ch) for ch in s if ch.isdigit()),
       slug="digit_sum", returns=True),
    Op("find", "str", "int", ("return the index of the first '{c}' in {a} (-1 if there is none)",),
       '{a}.find("{c}")', lambda s, c: s.find(c["c"]), _pick("c", "aeinorst"), slug="find", returns=True),
]
WORD_FINAL = [
    Op("join", "words", "str", ("join them with '{sep}'", "join them into one string separated by '{sep}'"),
       '"{sep}".join({a})', lambda ws, c: c["sep"].join(ws), _pick("sep", [" ", "-", ",", "_", ", ", "/"]),
       var="joined", slug="joined"),
    Op("concat", "words", "str", ("concatenate them into one string", "glue them together without separators"),
       '"".join({a})', lambda ws, c: "".join(ws), var="joined", slug="concat"),
    Op("wcount", "words", "int", ("return how many there are", "return the number of words"),
       "len({a})", lambda ws, c: len(ws), slug="count", returns=True),
    Op("total", "words", "int", ("return their total number of characters", "return the sum of their lengths"),
       "sum(len(w) for w in {a})", lambda ws, c: sum(len(w) for w in ws), slug="total_length", returns=True),
    Op("longest", "words", "str", ("return the longest one (the first one on a tie, '' if there are none)",),
       'max({a}, key=len, default="")', lambda ws, c: max(ws, key=len, default=""), slug="longest", returns=True),
    Op("shortest", "words", "str", ("return the shortest one (the first one on a tie, '' if there are none)",),
       'min({a}, key=len, default="")', lambda ws, c: min(ws, key=len, default=""), slug="shortest", returns=True),
    Op("bylen", "words", "words", ("sort them by length, shortest first (ties keep their order)",),
       "sorted({a}, key=len)", lambda ws, c: sorted(ws, key=len), var="ordered", slug="by_length"),
]


def _y_op(id_: str, expr: str, phrases: tuple[str, ...], fn, slug: str) -> Op:
    return Op(id_, "int", "int", phrases, expr, lambda v, c: fn(v, c["yv"]), var="value", slug=slug, uses_y=True)


ARITH_Y = [
    _y_op("add_y", "{a} + {y}", ("add {y} to {a}",), lambda v, y: v + y, "plus"),
    _y_op("sub_y", "{a} - {y}", ("subtract {y} from {a}",), lambda v, y: v - y, "minus"),
    _y_op("mul_y", "{a} * {y}", ("multiply {a} by {y}",), lambda v, y: v * y, "times"),
    _y_op("max_y", "max({a}, {y})", ("take the larger of {a} and {y}",), lambda v, y: max(v, y), "max"),
    _y_op("min_y", "min({a}, {y})", ("take the smaller of {a} and {y}",), lambda v, y: min(v, y), "min"),
]


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

VOCAB = ("apple", "Banana", "cat", "dog", "Echo", "kiwi", "sky", "tree", "moon", "Sun", "river", "stone", "bird",
         "Lemon", "ant", "owl", "pear", "zebra", "Mango", "grape", "fox", "Bear", "rain", "star", "ice", "oak",
         "Tulip", "wolf", "sea", "hill", "leaf", "duck", "Cedar", "plum", "frog", "Iris", "road", "salt", "Atlas",
         "bee", "cloud", "Delta", "fern", "lake", "mint", "nut", "Olive", "rose", "tea", "snow")
_LOWER = "aeiouaeiou" + "bcdfghklmnprstwy"
_TYPE = {"ints": "list[int]", "int": "int", "str": "str", "words": "list[str]"}


def _rand_ints(r: random.Random) -> list[int]:
    return [r.randint(-6, 15) for _ in range(r.randint(3, 7))]


def _rand_text(r: random.Random) -> str:
    def char() -> str:
        x = r.random()
        return r.choice("0123456789") if x < 0.12 else r.choice(_LOWER).upper() if x < 0.25 else r.choice(_LOWER)
    return " ".join("".join(char() for _ in range(r.randint(2, 6))) for _ in range(r.randint(1, 3)))


def _rand_words(r: random.Random, repeats: bool = False) -> list[str]:
    pool = r.sample(VOCAB, 4) if repeats else VOCAB
    return [r.choice(pool) for _ in range(r.randint(2, 6 if not repeats else 8))]


RANDOM_INPUT = {"ints": _rand_ints, "str": _rand_text, "words": _rand_words,
                "int": lambda r: r.randint(-20, 30)}
EDGE_INPUTS = {"ints": ([], [0], [-4, -1], [7, 7, 7]), "str": ("", "a", "Ab 1"), "words": ([], ["Oak"]),
               "int": (0, -7, 1)}
ARG_NAMES = {"ints": ("nums", "numbers", "values", "xs", "items", "data", "arr", "lst", "seq"),
             "str": ("s", "text", "word", "string", "line", "phrase", "msg"),
             "words": ("words", "names", "tokens", "strings", "items"),
             "int": ("x", "n", "num", "value", "a")}
Y_NAMES = ("y", "m", "b", "other", "step")
GENERIC_NAMES = ("process", "transform", "solve", "f", "compute", "apply", "convert", "crunch", "handle",
                 "run", "calc", "evaluate", "helper", "task", "do_it")


# ---------------------------------------------------------------------------------------------
# Task specs, checks and assembly
# ---------------------------------------------------------------------------------------------

@dataclass
class Spec:
    """Everything a family decides; _assemble turns it into a checked human-eval task."""
    name: str
    params: list[tuple[str, str]]
    returns: str
    doc: str
    body: list[str]
    ref: Callable[..., Any]
    inputs: list[tuple]
    ablations: list[Callable[..., Any]] = field(default_factory=list)
    min_distinct: int = 3
    branch: Callable[..., int] | None = None   # which branch an input takes; every branch must be tested
    n_branches: int = 0


def _arg_name(r: random.Random, pool: tuple[str, ...]) -> str:
    # Half the time the pool's usual name: a calibration run of a 0.66M-parameter model lost half its
    # samples to NameErrors from not copying an argument name it had rarely seen.
    return pool[0] if r.random() < 0.5 else r.choice(pool)


def _func_name(r: random.Random, slugs: list[str], prefix: tuple[str, ...] = ("", "get_", "compute_")) -> str:
    if r.random() < 0.5 and slugs:
        name = r.choice(prefix) + "_".join(s for s in slugs if s)
    else:
        name = r.choice(GENERIC_NAMES)
    if keyword.iskeyword(name) or hasattr(builtins, name):
        name = "get_" + name
    return name


def _sentence(r: random.Random, steps: list[str], intro: str = "") -> str:
    """Join imperative steps into one sentence: "a, b, and c." / "a, then b, then c." / "first a; ..."."""
    if len(steps) == 1:
        s = steps[0]
    elif len(steps) == 2:
        s = r.choice([f"{steps[0]} and {steps[1]}", f"{steps[0]}, then {steps[1]}"])
    else:
        s = r.choice([", ".join(steps[:-1]) + ", and " + steps[-1], ", then ".join(steps),
                      "first " + steps[0] + "; then " + "; then ".join(steps[1:-1]) + "; finally " + steps[-1]])
    s = intro + s
    return s[0].upper() + s[1:] + "."


def _interesting(v: Any) -> bool:
    return v not in ([], "", 0, {}, -1) and not isinstance(v, bool)


def _run(fn: Callable, args: tuple) -> Any:
    return fn(*copy.deepcopy(args))


@dataclass(frozen=True)
class TestShape:
    """How many cases a task's test has: they set how fine-grained the execution reward is."""
    random_inputs: int = 4   # random inputs drawn per task (besides the edge inputs); the example is one of them
    max_asserts: int = 6     # asserts kept in check(), the docstring example first
    min_asserts: int = 3     # fewer distinct cases and the task is dropped

    def __post_init__(self):
        if not 1 <= self.random_inputs <= 7 or not 1 <= self.min_asserts <= self.max_asserts:
            raise ValueError(f"bad test shape {self}: need 1 <= random_inputs <= 7 and 1 <= min_asserts <= max_asserts")


def _assemble(spec: Spec, shape: TestShape) -> dict | None:
    """Compute expected outputs from the reference, reject uninformative tasks, render the task."""
    cases, seen = [], set()
    for args in spec.inputs:
        if repr(args) in seen:
            continue
        seen.add(repr(args))
        try:
            cases.append((args, _run(spec.ref, args)))
        except (ArithmeticError, IndexError, KeyError, ValueError, RecursionError):
            return None

    def informative(case: tuple) -> int:
        args, out = case
        score = _interesting(out) + (repr(out) != repr(args[0]))
        for ab in spec.ablations:
            try:
                score += repr(_run(ab, args)) != repr(out)
            except Exception:
                score += 1
        return score

    # the docstring example: among the random inputs, the one showing most of the chain, then the shortest
    example = min(cases[:shape.random_inputs], key=lambda c: (-informative(c), len(repr(c))))
    cases = [example] + [c for c in cases if c is not example][:shape.max_asserts - 1]
    outs = [repr(o) for _, o in cases]
    if len(cases) < shape.min_asserts or len(set(outs)) < spec.min_distinct:
        return None
    for ab in spec.ablations:       # every operation must change some expected output
        try:
            if [repr(_run(ab, a)) for a, _ in cases] == outs:
                return None
        except Exception:           # an ablated chain that crashes certainly differs
            pass
    if spec.branch is not None and len({spec.branch(*a) for a, _ in cases}) < spec.n_branches:
        return None

    def call(args: tuple) -> str:
        return ", ".join(repr(a) for a in args)

    sig = ", ".join(f"{p}: {t}" for p, t in spec.params)
    doc = textwrap.wrap(spec.doc, 88)
    prompt = (f"def {spec.name}({sig}) -> {spec.returns}:\n" + f'    """{doc[0]}\n'
              + "".join(f"    {line}\n" for line in doc[1:])
              + f"    >>> {spec.name}({call(example[0])})\n    {example[1]!r}\n" + '    """\n')
    test = "def check(candidate):\n" + "".join(f"    assert candidate({call(a)}) == {o!r}\n" for a, o in cases)
    return {"prompt": prompt, "canonical_solution": "".join(f"    {line}\n" for line in spec.body),
            "test": test, "entry_point": spec.name}


def _inputs(r: random.Random, t: str, n_random: int) -> list:
    edges = list(EDGE_INPUTS[t])
    return [RANDOM_INPUT[t](r) for _ in range(n_random)] + [edges[0], r.choice(edges[1:])]


# ---------------------------------------------------------------------------------------------
# Families
# ---------------------------------------------------------------------------------------------

class Family:
    """A kind of task: its operation combinations per level and how to build one task."""
    name = ""
    patterns: dict[int, list[tuple[str, ...]]] = {}
    pools: dict[str, list[str]] = {}

    def valid(self, combo: tuple[str, ...]) -> bool:
        return len(set(combo)) == len(combo)

    def combos(self, level: int) -> list[tuple[str, ...]]:
        out = set()
        for pattern in self.patterns[level]:
            for combo in itertools.product(*(self.pools[k] for k in pattern)):
                if self.valid(combo):
                    out.add(combo)
        return sorted(out)

    def build(self, r: random.Random, combo: tuple[str, ...], n_random: int) -> Spec | None:
        raise NotImplementedError


class ChainFamily(Family):
    """A straight chain of Ops: value = op_n(...op_1(arg)); one statement per step."""

    def __init__(self, name: str, t_in: str, ops: dict[str, list[Op]], patterns: dict, scalar: bool = False,
                 text_input: bool = False):
        self.name, self.t_in, self.patterns, self.scalar, self.text_input = name, t_in, patterns, scalar, text_input
        self.ops = {op.id: op for pool in ops.values() for op in pool}
        self.pools = {kind: [op.id for op in pool] for kind, pool in ops.items()}

    def build(self, r: random.Random, combo: tuple[str, ...], n_random: int) -> Spec | None:
        ops = [self.ops[i] for i in combo]
        consts = [op.consts(r) for op in ops]
        t_in = self.t_in
        split_text = self.text_input and r.random() < 0.5
        arg = _arg_name(r, ("text", "sentence", "line", "s") if split_text else ARG_NAMES[t_in])
        y = _arg_name(r, Y_NAMES) if any(op.uses_y for op in ops) else None
        if arg == y:
            return None
        body, cur, used = [], arg, {arg}
        if split_text:
            body.append(f"words = {arg}.split()")
            cur = "words"
            used.add("words")
        steps, templates = [], []
        for i, (op, c) in enumerate(zip(ops, consts)):
            subject = arg if i == 0 and not split_text else r.choice(["it", "the result"]) if self.scalar else "it"
            templates.append(r.choice(op.phrases))
            steps.append(_fill(templates[-1], {**c, "a": subject, "y": y or ""}))
            values = {**c, "a": cur, "y": y or ""}
            if i == len(ops) - 1:
                body += [_fill(line, values) for line in op.block] or [f"return {_fill(op.code, values)}"]
            else:
                var = op.var
                while var in used and not self.scalar:
                    var += "2"
                body.append(f"{var} = {_fill(op.code, values)}")
                cur = var
                used.add(var)
        t_out = ops[-1].t_out
        if not ops[-1].returns:
            steps.append(r.choice({"ints": ["return the resulting list", "return the new list"],
                                   "words": ["return the resulting list", "return them as a list"],
                                   "str": ["return the result", "return the new string"],
                                   "int": ["return the result"]}[t_out]))
        intro = ""
        if split_text:
            steps.insert(0, f"split {arg} into words (on whitespace)")
        elif "{a}" not in templates[0]:
            what = {"ints": "a list of integers", "str": "a string", "words": "a list of words"}[t_in]
            intro = r.choice([f"given {what} {arg}, ", f"take {arg}, ", f"for {arg}, "])
        if self.scalar and len(ops) == 1 and r.random() < 0.5:
            m = INT_MAPS.get(ops[0].id)
            if m is not None:
                steps = [f"return {_fill(r.choice(m.nouns), {**consts[0], 'a': arg})}"]
        doc = _sentence(r, steps, intro)

        def run(*args, skip: int = -1):
            v = args[0].split() if split_text else args[0]
            for j, (op, c) in enumerate(zip(ops, consts)):
                if j != skip:
                    v = op.ref(v, {**c, "yv": args[1]} if y else c)
            return v

        ablations = [functools.partial(run, skip=j) for j, op in enumerate(ops)
                     if op.t_in == op.t_out and len(ops) > 1]
        params = [(arg, "str" if split_text else _TYPE[t_in])] + ([(y, "int")] if y else [])
        inputs = _inputs(r, t_in, n_random)
        if split_text:
            inputs = [" ".join(ws) for ws in inputs]
        if y:
            inputs = [(x, r.randint(-6, 9)) for x in inputs]
        else:
            inputs = [(x,) for x in inputs]
        name = _func_name(r, [op.slug for op in ops])
        if name in used or name == y:
            name = "solve_" + name
        return Spec(name, params, _TYPE.get(t_out, t_out), doc, body, run, inputs, ablations)


class LoopFamily(Family):
    """One explicit loop over range(...) or the digits of n, with an optional condition and map."""
    name = "loops"
    SOURCES = {
        "range1": ("for i in range(1, {n} + 1):", ("the numbers from 1 to {n}", "the integers 1 through {n}"),
                   "number"),
        "range0": ("for i in range({n}):", ("the numbers from 0 to {n} - 1", "the integers 0, 1, ..., {n} - 1"),
                   "number"),
        "digits": ("for ch in str({n}):", ("the digits of {n}", "each decimal digit of {n}"), "digit"),
    }
    REDUCERS = {  # init, update, phrases
        "sum": ("total = 0", "total += {e}", "total", ("return their sum", "add them up and return the total")),
        "prod": ("product = 1", "product *= {e}", "product", ("return their product (1 if there are none)",)),
        "count": ("count = 0", "count += 1", "count", ("return how many there are", "return the number of them")),
        "collect": ("result = []", "result.append({e})", "result", ("return them as a list", "return them in a list")),
    }
    CONDS = ("even", "odd", "div", "ndiv", "gt", "lt")
    MAPS = ("sq", "add", "sub", "mul")
    pools = {"S": list(SOURCES), "F": ["keep_" + c for c in CONDS], "M": ["map_" + m for m in MAPS],
             "R": list(REDUCERS)}
    patterns = {1: [("S", "R")], 2: [("S", "F", "R"), ("S", "M", "R")],
                3: [("S", "F", "M", "R"), ("S", "M", "F", "R")]}

    def valid(self, combo):
        # a map before count, when no condition reads its result, changes nothing
        return not (combo[-1] == "count" and combo[-2].startswith("map_"))

    def build(self, r, combo, n_random):
        src = self.SOURCES[combo[0]]
        cond = next((INT_CONDS[o[5:]] for o in combo if o.startswith("keep_")), None)
        m = next((INT_MAPS[o[4:]] for o in combo if o.startswith("map_")), None)
        map_first = m is not None and cond is not None and combo.index("map_" + m.id) < combo.index("keep_" + cond.id)
        cc, mc = (cond.consts(r) if cond else {}), (m.consts(r) if m else {})
        init, update, acc, rphrases = self.REDUCERS[combo[-1]]
        arg = _arg_name(r, ("n", "num", "limit") if combo[0] != "digits" else ("n", "num", "number"))
        item = src[2]
        var = "d" if combo[0] == "digits" else "i"
        body = [init, _fill(src[0], {"n": arg})]
        ind = "    "
        if combo[0] == "digits":
            body.append(ind + "d = int(ch)")
        e = var
        if m and map_first:
            body.append(ind + f"v = {_fill(m.expr, {**mc, 'v': var})}")
            e = "v"
        if cond:
            body.append(ind + f"if {_fill(cond.expr, {**cc, 'v': e})}:")
            ind += "    "
        if m and not map_first:
            e = _fill(m.expr, {**mc, "v": var})
        body += [ind + _fill(update, {"e": e}), f"return {acc}"]
        steps = ["take " + _fill(r.choice(src[1]), {"n": arg})]
        parts = [("F", cond, cc), ("M", m, mc)] if not map_first else [("M", m, mc), ("F", cond, cc)]
        for kind, obj, c in parts:
            if obj is None:
                continue
            if kind == "F":
                phrase = "keep only the " + r.choice(obj.nouns)
                if map_first:
                    phrase = "keep only the results that " + r.choice(obj.adjs)
            else:
                phrase = r.choice(obj.each)
            steps.append(_fill(phrase, {**c, "items": item + "s", "item": item}))
        steps.append(r.choice(rphrases))
        doc = _sentence(r, steps)

        def run(n, use_cond=True, use_map=True):
            vals = [int(ch) for ch in str(n)] if combo[0] == "digits" else \
                list(range(1, n + 1)) if combo[0] == "range1" else list(range(n))
            out = []
            for v in vals:
                if m and use_map and map_first:
                    v = m.fn(v, mc)
                if cond and use_cond and not cond.fn(v, cc):
                    continue
                if m and use_map and not map_first:
                    v = m.fn(v, mc)
                out.append(v)
            red = combo[-1]
            if red == "prod":
                p = 1
                for v in out:
                    p *= v
                return p
            return sum(out) if red == "sum" else len(out) if red == "count" else out

        ablations = ([functools.partial(run, use_cond=False)] if cond else []) + \
                    ([functools.partial(run, use_map=False)] if m else [])
        if combo[0] == "digits":
            inputs = [r.randint(10, 99999) for _ in range(n_random)] + [0, r.choice([7, 10, 105])]
        else:
            inputs = [r.randint(2, 12) for _ in range(n_random)] + [0, 1]
        slugs = [m.slug if m else "", cond.slug if cond else "",
                 {"range1": "", "range0": "range", "digits": "digits"}[combo[0]],
                 {"sum": "sum", "prod": "product", "count": "count", "collect": "list"}[combo[-1]]]
        name = _func_name(r, [s for s in slugs if s])
        returns = "list[int]" if combo[-1] == "collect" else "int"
        return Spec(name, [(arg, "int")], returns, doc, body, run, [(x,) for x in inputs], ablations)


class DictFamily(Family):
    """Aggregate a list of words into a dict keyed by some property, with an optional filter and post-step."""
    name = "dict_count"
    KEYS = {  # code over w, phrase, key type, ref
        "word": ("w", ("word",), "str", lambda w: w),
        "lower": ("w.lower()", ("lowercased word",), "str", lambda w: w.lower()),
        "first": ("w[0]", ("first letter",), "str", lambda w: w[0]),
        "last": ("w[-1]", ("last letter",), "str", lambda w: w[-1]),
        "length": ("len(w)", ("word length", "length"), "int", len),
    }
    AGGS = {  # var, update, value type, phrases
        "count": ("counts", "{d}[{key}] = {d}.get({key}, 0) + 1", "int",
                  ("map each {key} to the number of words with that {key}",
                   "count how many words have each {key} (a dict from {key} to count)")),
        "total": ("totals", "{d}[{key}] = {d}.get({key}, 0) + len(w)", "int",
                  ("map each {key} to the total length of the words with that {key}",)),
        "group": ("groups", "{d}.setdefault({key}, []).append(w)", "list[str]",
                  ("group the words by {key} (a dict from {key} to the list of its words, in order)",)),
    }
    POSTS = {
        "atleast": ("return {key: v for key, v in {d}.items() if v >= {k}}", None,
                    ("return only the entries whose value is at least {k}",), _k(2, 3)),
        "nkeys": ("return len({d})", "int", ("return the number of entries", "return how many keys the dict has"),
                  _no_consts),
        "most": ('return max({d}, key={d}.get, default="")', "str",
                 ("return the key with the largest value (the first one on a tie, '' if there is none)",), _no_consts),
        "maxval": ("return max({d}.values(), default=0)", "int",
                   ("return the largest value (0 if the dict is empty)",), _no_consts),
    }
    CONDS = ("longer", "shorter", "starts", "contains", "capital")
    pools = {"F": ["keep_" + c for c in CONDS], "K": list(KEYS), "A": list(AGGS), "P": list(POSTS)}
    patterns = {1: [("K", "A")], 2: [("F", "K", "A"), ("K", "A", "P")], 3: [("F", "K", "A", "P")]}

    def valid(self, combo):
        key, agg = combo[-2:] if combo[-1] in self.AGGS else combo[-3:-1]
        post = combo[-1] if combo[-1] in self.POSTS else None
        if agg == "group" and (key == "word" or post not in (None, "nkeys")) or (key, agg) == ("word", "total"):
            return False
        return not (post == "most" and key == "length")

    def build(self, r, combo, n_random):
        cond = WORD_CONDS[combo[0][5:]] if combo[0].startswith("keep_") else None
        key, agg = [c for c in combo if c in self.KEYS or c in self.AGGS]
        post = combo[-1] if combo[-1] in self.POSTS else None
        cc = cond.consts(r) if cond else {}
        kcode, kphr, ktype, kfn = self.KEYS[key]
        d, update, vtype, aphr = self.AGGS[agg]
        pcode, ptype, pphr, pconsts = self.POSTS[post] if post else ("return {d}", None, (), _no_consts)
        pc = pconsts(r)
        arg = _arg_name(r, ARG_NAMES["words"])
        body, ind = [f"{d} = {{}}", f"for w in {arg}:"], "    "
        if cond:
            body.append(ind + f"if {_fill(cond.expr, {**cc, 'v': 'w'})}:")
            ind += "    "
        body.append(ind + _fill(update, {"d": d, "key": kcode}))
        body.append(_fill(pcode, {"d": d, **pc}))
        kp = r.choice(kphr)
        steps = []
        if cond:
            lead = r.choice(["consider only the ", "ignore all words except the "])
            steps.append(lead + _fill(r.choice(cond.nouns), cc))
        if agg == "count" and key in ("word", "lower"):
            aphr = {"word": ("count how many times each word occurs (a dict from word to count)",
                             "map each distinct word to the number of times it occurs"),
                    "lower": ("count how many times each word occurs, ignoring case (a dict from the lowercased "
                              "word to count)", "map each lowercased word to the number of times it occurs")}[key]
        steps.append(_fill(r.choice(aphr), {"key": kp}))
        steps.append(_fill(r.choice(pphr), pc) if post else r.choice(["return the dict", "return that dict"]))
        doc = _sentence(r, steps, r.choice([f"take {arg}, ", f"given a list of words {arg}, "]))

        def run(ws, use_cond=True, use_post=True):
            acc: dict = {}
            for w in ws:
                if cond and use_cond and not cond.fn(w, cc):
                    continue
                k = kfn(w)
                if agg == "group":
                    acc.setdefault(k, []).append(w)
                else:
                    acc[k] = acc.get(k, 0) + (1 if agg == "count" else len(w))
            if not post or not use_post:
                return acc
            if post == "atleast":
                return {k: v for k, v in acc.items() if v >= pc["k"]}
            if post == "nkeys":
                return len(acc)
            if post == "most":
                return max(acc, key=acc.get, default="")
            return max(acc.values(), default=0)

        ablations = [functools.partial(run, use_cond=False)] if cond else []
        if post == "atleast":
            ablations.append(functools.partial(run, use_post=False))
        returns = ptype or f"dict[{ktype}, {vtype}]"
        inputs = [(_rand_words(r, repeats=True),) for _ in range(n_random)] + [([],), (["Oak", "oak", "owl"],)]
        name = _func_name(r, [cond.slug if cond else "", key, {"count": "counts", "total": "totals",
                                                               "group": "groups"}[agg], post or ""])
        return Spec(name, [(arg, "list[str]")], returns, doc, body, run, inputs, ablations)


class ConditionalFamily(Family):
    """if/elif/else on an integer: labels, or computed results per branch."""
    name = "conditional"
    CONDS = ("even", "odd", "pos", "neg", "gt", "lt", "div", "between")
    MAPS = ("sq", "add", "sub", "mul", "neg", "abs", "fdiv", "mod")
    LABELS = ("low", "high", "small", "big", "cold", "hot", "yes", "no", "red", "green", "blue", "left", "right",
              "up", "down", "on", "off", "fizz", "buzz", "ok", "bad", "A", "B", "C", "D")
    pools = {"C": list(CONDS), "M": ["ret_" + m for m in MAPS]}
    patterns = {1: [("C",)], 2: [("C", "C"), ("C", "M")], 3: [("C", "C", "C"), ("C", "M", "C", "M")]}

    def build(self, r, combo, n_random):
        conds = [INT_CONDS[c] for c in combo if not c.startswith("ret_")]
        maps = [INT_MAPS[c[4:]] for c in combo if c.startswith("ret_")]
        cc = [c.consts(r) for c in conds]
        mc = [m.consts(r) for m in maps]
        x = _arg_name(r, ARG_NAMES["int"])
        labels = r.sample(self.LABELS, len(conds) + 1) if not maps else None
        body, clauses = [], []
        for j, (cond, c) in enumerate(zip(conds, cc)):
            body.append(("if " if j == 0 else "elif ") + _fill(cond.expr, {**c, "v": x}) + ":")
            adj = _fill(r.choice(cond.adjs), c)
            if labels:
                body.append(f"    return {labels[j]!r}")
                clauses.append(f"{labels[j]!r} if {x} {adj}")
            else:
                body.append(f"    return {_fill(maps[j].expr, {**mc[j], 'v': x})}")
                clauses.append(f"if {x} {adj}, return {_fill(r.choice(maps[j].nouns), {**mc[j], 'a': x})}")
        body += ["else:", f"    return {labels[-1]!r}" if labels else f"    return {x}"]
        if labels:
            doc = "Return " + "; otherwise ".join(clauses) + f"; otherwise return {labels[-1]!r}."
        else:
            doc = "; otherwise, ".join(clauses) + f"; otherwise return {x} unchanged."
            doc = doc[0].upper() + doc[1:]

        def branch(v):
            return next((j for j, (cond, c) in enumerate(zip(conds, cc)) if cond.fn(v, c)), len(conds))

        def run(v, plain=-1):
            j = branch(v)
            if labels:
                return labels[j]
            return maps[j].fn(v, mc[j]) if j < len(maps) and j != plain else v

        ablations = [functools.partial(run, plain=j) for j in range(len(maps))]

        # inputs that reach every branch: random values plus each threshold and its neighbours
        pool = [r.randint(-15, 25) for _ in range(12)]
        for c in cc:
            for k in (c.get("k"), c.get("lo"), c.get("hi")):
                if k is not None:
                    pool += [k - 1, k, k + 1]
        by_branch: dict[int, list[int]] = {}
        for v in pool:
            by_branch.setdefault(branch(v), []).append(v)
        inputs = [r.choice(vs) for _, vs in sorted(by_branch.items())] + r.sample(pool, 2) + [0]
        r.shuffle(inputs)
        slugs = [c.slug for c in conds] + ["label" if labels else "value"]
        name = _func_name(r, slugs, ("", "classify_", "check_"))
        return Spec(name, [(x, "int")], "str" if labels else "int", doc, body, run, [(v,) for v in inputs],
                    ablations, min_distinct=2 if len(conds) == 1 else 3, branch=branch, n_branches=len(conds) + 1)


class RecursionFamily(Family):
    """a(0) = c; a(n) = op_k(...op_1(a(n - 1))) written as a recursive function."""
    name = "recursion"
    OPS = {  # code over {a} and n, phrases, ref
        "add_n": ("{a} + n", ("add n", "add n to it"), lambda v, n, c: v + n),
        "sub_n": ("{a} - n", ("subtract n", "subtract n from it"), lambda v, n, c: v - n),
        "mul_n": ("{a} * n", ("multiply it by n",), lambda v, n, c: v * n),
        "add_k": ("{a} + {k}", ("add {k}", "add {k} to it"), lambda v, n, c: v + c["k"]),
        "sub_k": ("{a} - {k}", ("subtract {k}", "subtract {k} from it"), lambda v, n, c: v - c["k"]),
        "mul_k": ("{a} * {k}", ("multiply it by {k}",), lambda v, n, c: v * c["k"]),
        "neg": ("-{a}", ("negate it", "flip its sign"), lambda v, n, c: -v),
        "add_sq": ("{a} + n * n", ("add n squared", "add the square of n"), lambda v, n, c: v + n * n),
        "mod_k": ("{a} % {k}", ("take it modulo {k}",), lambda v, n, c: v % c["k"]),
    }
    CONSTS = {"add_k": _k(1, 5), "sub_k": _k(1, 5), "mul_k": _k(2, 3), "mod_k": _k(3, 7)}
    pools = {"R": list(OPS)}
    patterns = {1: [("R",)], 2: [("R", "R")], 3: [("R", "R", "R")]}

    def build(self, r, combo, n_random):
        consts = [self.CONSTS.get(o, _no_consts)(r) for o in combo]
        base = r.randint(0, 4)
        name = _func_name(r, ["seq"], ("", "a_", "term_")) if r.random() < 0.3 else \
            r.choice(("f", "a", "seq", "rec", "term", "g", "series", "sequence", "value_at"))
        body = ["if n == 0:", f"    return {base}", f"value = {name}(n - 1)"]
        for j, (o, c) in enumerate(zip(combo, consts)):
            expr = _fill(self.OPS[o][0], {**c, "a": "value"})
            body.append(f"return {expr}" if j == len(combo) - 1 else f"value = {expr}")
        steps = [_fill(r.choice(self.OPS[o][1]), c) for o, c in zip(combo, consts)]
        chain = _sentence(r, [f"take {name}(n - 1)"] + steps)
        doc = f"Return {name}(n) for n >= 0, where {name}(0) = {base}; for n > 0, " + chain[0].lower() + chain[1:]

        def run(n, skip=-1):
            v = base
            for i in range(1, n + 1):
                for j, (o, c) in enumerate(zip(combo, consts)):
                    if j != skip:
                        v = self.OPS[o][2](v, i, c)
            return v

        ablations = [functools.partial(run, skip=j) for j in range(len(combo))] if len(combo) > 1 else []
        inputs = [(n,) for n in r.sample(range(2, 9), n_random)] + [(0,), (1,)]
        return Spec(name, [("n", "int")], "int", doc, body, run, inputs, ablations)


def _families() -> dict[str, Family]:
    int_keep = [_keep(c, "ints", "x", "numbers") for c in INT_CONDS.values()]
    int_map = [_each(m, "ints", "ints", "x", "number") for m in INT_MAPS.values()]
    fams: list[Family] = [
        ChainFamily("list_transform", "ints", {"F": int_keep, "M": int_map},
                    {1: [("F",), ("M",)], 2: [("F", "M"), ("M", "F")],
                     3: [("F", "M", "F"), ("M", "F", "M"), ("F", "F", "M"), ("F", "M", "M")]}),
        ChainFamily("list_reduce", "ints", {"F": int_keep, "M": int_map, "R": LIST_REDUCE},
                    {1: [("R",)], 2: [("F", "R"), ("M", "R")], 3: [("F", "M", "R"), ("M", "F", "R")]}),
        ChainFamily("sort_search", "ints", {"F": int_keep[:7], "M": int_map[:6], "O": LIST_ORDER, "T": LIST_SLICE,
                                            "S": LIST_SEARCH},
                    {1: [("O",), ("S",)], 2: [("F", "O"), ("M", "O"), ("O", "T"), ("F", "S"), ("M", "S")],
                     3: [("F", "O", "T"), ("M", "O", "T"), ("F", "M", "O"), ("M", "F", "S")]}),
        ChainFamily("string_transform", "str", {"T": STR_OPS}, {1: [("T",)], 2: [("T", "T")], 3: [("T", "T", "T")]}),
        ChainFamily("string_count", "str", {"T": STR_OPS, "C": STR_COUNT},
                    {1: [("C",)], 2: [("T", "C")], 3: [("T", "T", "C")]}),
        ChainFamily("words", "words", {"F": [_keep(c, "words", "w", "words") for c in WORD_CONDS.values()],
                                       "M": [_each(m, "words", "words", "w", "word") for m in WORD_MAPS.values()],
                                       "Z": WORD_FINAL},
                    {1: [("F",), ("M",), ("Z",)], 2: [("F", "M"), ("F", "Z"), ("M", "Z")],
                     3: [("F", "M", "Z"), ("M", "F", "Z"), ("F", "F", "Z")]}, text_input=True),
        ChainFamily("arithmetic", "int", {"A": [_scalar(m) for m in INT_MAPS.values()], "Y": ARITH_Y},
                    {1: [("A",)], 2: [("A", "A"), ("A", "Y"), ("Y", "A")],
                     3: [("A", "A", "A"), ("A", "Y", "A"), ("Y", "A", "A"), ("A", "A", "Y")]}, scalar=True),
        ConditionalFamily(), LoopFamily(), DictFamily(), RecursionFamily(),
    ]
    return {f.name: f for f in fams}


FAMILIES: dict[str, Family] = _families()
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


@functools.lru_cache(maxsize=None)
def family_combos(family: str, level: int) -> tuple[tuple[str, ...], ...]:
    """All operation combinations of a family at a level, in a fixed order."""
    return tuple(FAMILIES[family].combos(level))


def combo_key(family: str, combo: tuple[str, ...]) -> str:
    return f"{family}:{'|'.join(combo)}"


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------

def heldout_combos(seed: int, families: list[str] | tuple[str, ...], frac: float) -> set[str]:
    """A seeded `frac` of each family's level-2 and level-3 combinations, never used in train.

    Level 1 (single operations) is never held out, so every operation is seen in train.
    """
    out = set()
    for fam in families:
        for level in (2, 3):
            combos = list(family_combos(fam, level))
            random.Random(f"{seed}:heldout:{fam}:{level}").shuffle(combos)
            n = min(round(frac * len(combos)), len(combos) - 1)
            out.update(combo_key(fam, c) for c in combos[:n])
    return out


def _allocate(n: int, cells: list[tuple[str, int]], weights: list[float]) -> dict[tuple[str, int], int]:
    """Split n over (family, level) cells: families equally, levels by weight (largest remainder)."""
    shares = [weights[level - 1] for _, level in cells]
    total = sum(shares)
    exact = [n * s / total for s in shares]
    counts = [int(e) for e in exact]
    order = sorted(range(len(cells)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return {cell: c for cell, c in zip(cells, counts)}


def _make_task(r: random.Random, fam: str, combos: list[tuple[str, ...]], taken: set[str],
               shape: TestShape) -> tuple | None:
    for _ in range(60):
        combo = r.choice(combos)
        spec = FAMILIES[fam].build(r, combo, shape.random_inputs)
        task = _assemble(spec, shape) if spec is not None else None
        if task is not None and task["prompt"] not in taken:
            return combo, task
    return None


class BadArgument(ValueError):
    """A generator argument that cannot work; `arg` names it (e.g. "families[1]")."""

    def __init__(self, arg: str, message: str):
        super().__init__(message)
        self.arg = arg


def check_arguments(families: list[str] | tuple[str, ...], heldout_family: str | None,
                    difficulty_weights: list[float] | tuple[float, ...]) -> None:
    """Raise BadArgument for an unknown family, a held-out family not in use or unusable weights."""
    for i, fam in enumerate(families):
        if fam not in FAMILIES:
            raise BadArgument(f"families[{i}]", f"unknown family {fam!r} (known: {', '.join(FAMILY_NAMES)})")
    in_use = list(families) or list(FAMILY_NAMES)
    if heldout_family is not None and heldout_family not in in_use:
        raise BadArgument("heldout_family", f"heldout_family {heldout_family!r} is not among the families in use "
                                            f"({', '.join(in_use)})")
    w = difficulty_weights
    if len(w) != 3 or min(w) < 0 or sum(w) <= 0:
        raise BadArgument("difficulty_weights", "difficulty_weights must be three non-negative weights "
                                                f"(levels 1, 2, 3) with a positive sum, got {list(w)}")


def generate_splits(counts: dict[str, int], seed: int, families: list[str] | tuple[str, ...] = (),
                    difficulty_weights: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0),
                    heldout_combo_frac: float = 0.0, heldout_family: str | None = None,
                    shape: TestShape = TestShape(), heldout_free: tuple[str, ...] = ("train",)
                    ) -> dict[str, list[dict]]:
    """Generate train/val/test (and rl) task lists (human-eval format plus family, difficulty, combo, heldout).

    Args:
        counts: tasks per split, e.g. {"train": 4000, "val": 200, "test": 600, "rl": 4000}.
        seed: the one seed; the same arguments always give the same tasks.
        families: families to use (empty: all of FAMILY_NAMES).
        difficulty_weights: relative weights of levels 1, 2, 3.
        heldout_combo_frac: share of level-2/3 combinations of each family kept out of train.
        heldout_family: a family kept out of train entirely (it still appears in val/test).
        shape: how many inputs and asserts each task's test gets (the conditional family draws its
            inputs per branch instead of `shape.random_inputs`).
        heldout_free: splits that never get a held-out combination or the held-out family (train
            always; add "rl" to keep the RL prompt pool free of them too).

    Splits are generated test, val, train, then any other (rl), each from its own random stream, so
    a split does not change when only the count of a later one does (adding rl leaves train/val/test
    byte for byte as they were); no prompt appears twice, within or across splits, and task ids
    run on across splits.
    """
    check_arguments(families, heldout_family, difficulty_weights)
    families = list(families) or list(FAMILY_NAMES)
    held = heldout_combos(seed, families, heldout_combo_frac)
    taken: set[str] = set()
    out: dict[str, list[dict]] = {}
    next_id = 0
    for split in sorted(counts, key=lambda s: {"test": 0, "val": 1, "train": 2}.get(s, 3)):
        r = random.Random(f"{seed}:{split}")
        free = split in heldout_free or split == "train"
        fams = [f for f in families if not (free and f == heldout_family)]
        if counts[split] and not fams:
            raise ValueError(f"no family left for {split} once the held-out family is removed")
        cells = [(f, lv) for f in fams for lv in LEVELS if difficulty_weights[lv - 1] > 0]
        tasks = []
        for (fam, level), n in _allocate(counts[split], cells, list(difficulty_weights)).items():
            combos = [c for c in family_combos(fam, level)
                      if not free or combo_key(fam, c) not in held]
            for _ in range(n):
                made = _make_task(r, fam, combos, taken, shape)
                if made is None:
                    raise RuntimeError(f"could not generate a new {fam} level-{level} task for {split}")
                combo, task = made
                taken.add(task["prompt"])
                key = combo_key(fam, combo)
                task.update(source="synthetic", family=fam, difficulty=level, combo=key,
                            heldout=not free and (key in held or fam == heldout_family))
                tasks.append(task)
        r.shuffle(tasks)
        for t in tasks:
            t["task_id"] = f"Synthetic/{next_id}"
            next_id += 1
        fields = ("task_id", "prompt", "canonical_solution", "test", "entry_point", "source", "family", "difficulty",
                  "combo", "heldout")
        out[split] = [{k: t[k] for k in fields} for t in tasks]
    return out


def generate(n: int, seed: int, families: list[str] | tuple[str, ...] = (),
             difficulty_weights: list[float] | tuple[float, ...] = (1.0, 1.0, 1.0)) -> list[dict]:
    """n tasks in one list (no held-out split): a convenience for tests and exploration."""
    return generate_splits({"test": n}, seed, families, difficulty_weights)["test"]
