"""The labelling page's server side: pair selection, per-annotator order and resume, judgment storage
(atomic appends, separate files, the format the reward stage reads), the HTTP API and its guards,
execution results on request, and the agreement report with Cohen's kappa."""
import contextlib
import dataclasses
import http.client
import json
import random
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from src.feedback import (Candidate, agreement_report, annotator_order, append_judgment, cohen_kappa,
                          judgment_row, load_candidates, row_pair_id, sample_hash, select_pairs, sides,
                          validate_annotator)
from src.io import UserError
from src import human_feedback
from src.label import LabelApp, LabelParams, make_server, url_of
from src.pairs import read_human_feedback
from src.params import parse_section

# Three small tasks in the reward stage's samples format (several samples per task).
P1 = ('def keep_sevens(nums: list[int]) -> list[int]:\n    """Keep only the numbers whose last digit is 7.\n'
      '    >>> keep_sevens([17, 8, -7, 70])\n    [17, -7]\n    """\n')
P2 = ('def count_small_distinct(nums: list[int]) -> int:\n    """Raise every number below 0 up to 0, keep the '
      'numbers less than 3, and count the distinct values.\n    >>> count_small_distinct([4, 0, -5, 2])\n'
      '    2\n    """\n')
P3 = ('def first_third(seq: list[int]) -> int:\n    """Floor-divide the first number by 3, or return -1 if there '
      'is none.\n    >>> first_third([13, 2])\n    4\n    """\n')
TESTS = {
    "t/sevens": ("keep_sevens", "def check(candidate):\n    assert candidate([17, 8, -7, 70]) == [17, -7]\n"
                 "    assert candidate([]) == []\n    assert candidate([7, 7]) == [7, 7]\n"
                 "    assert candidate([27, 3]) == [27]\n"),
}


def sample(task, prompt, completion, score, status=None):
    status = status or ("passed" if score == 1.0 else "failed")
    return {"task_id": task, "prompt": prompt, "completion": completion, "score": score, "status": status,
            "passed": status == "passed", "syntax_ok": True}


SAMPLES = [
    sample("t/sevens", P1, "    return [x for x in nums if abs(x) % 10 == 7]\n", 1.0),
    sample("t/sevens", P1, "    out = []\n    for x in nums:\n        if abs(x) % 10 == 7:\n"
                           "            out.append(x)\n    return out\n", 1.0),
    sample("t/sevens", P1, "    return [x for x in nums if x % 10 == 7]\n", 0.75),
    sample("t/sevens", P1, "    return [x for x in nums if x == 7]\n", 0.5),
    sample("t/small", P2, "    return len({max(x, 0) for x in nums if max(x, 0) < 3})\n", 1.0),
    sample("t/small", P2, "    clipped = [max(x, 0) for x in nums]\n    kept = [x for x in clipped if x < 3]\n"
                          "    return len(set(kept))\n", 1.0),
    sample("t/small", P2, "    return len(set(x for x in nums if x < 3))\n", 0.5),
    sample("t/small", P2, "    return len({max(x, 0) for x in nums if max(x, 0) < 3})\n", 1.0),   # a duplicate
    sample("t/third", P3, "    return seq[0] // 3 if seq else -1\n", 1.0),
    sample("t/third", P3, "    return [x // 3 for x in seq][0]\n", 0.8, "runtime_error"),
    sample("t/third", P3, "    return seq[0] / 3 if seq else -1\n", 0.2),
    sample("t/third", P3, "    return int(seq[0] / 3) if seq else -1\n", 0.8),
]
PARAMS = {"host": "127.0.0.1", "port": 0, "strategy": "informative", "max_pairs_per_task": 2,
          "max_score_gap": 0.25, "rerun": False}


def label_params(**kw) -> LabelParams:
    return parse_section(LabelParams, {**PARAMS, **kw}, "label")


def write_samples(path, rows=SAMPLES):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def make_app(tmp_path, rows=SAMPLES, **kw) -> LabelApp:
    samples = write_samples(tmp_path / "samples.jsonl", rows)
    return LabelApp(samples, tmp_path / "human_feedback", label_params(**kw), seed=7)


@contextlib.contextmanager
def running(app: LabelApp):
    """The app served on a free loopback port in a thread; yields the base URL."""
    srv = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield url_of(srv).rstrip("/")
    finally:
        srv.shutdown()
        srv.server_close()


def call(url, body=None, headers=None):
    """(status, parsed JSON) of a GET, or of a POST when body is given."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def raw(url, method, path, headers):
    """The status of a request with exactly these headers (no body)."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- pure parts


def test_params_section_validates():
    p = label_params()
    assert (p.host, p.port, p.strategy) == ("127.0.0.1", 0, "informative")
    with pytest.raises(UserError, match="label.strategy"):
        label_params(strategy="hardest")
    with pytest.raises(UserError, match="label.port"):
        label_params(port=70000)
    with pytest.raises(UserError, match="label.colour"):
        parse_section(LabelParams, {**PARAMS, "colour": "red"}, "label")


@pytest.mark.parametrize("name", ["alice", "Bob_2", "j.smith", "a-b", "x" * 64])
def test_safe_annotator_names_pass(name):
    assert validate_annotator(name) == name


@pytest.mark.parametrize("name", ["", "../alice", "a/b", ".hidden", "-x", "al ice", "x" * 65, "simulated",
                                  "a\nb", "café", None, 3])
def test_unsafe_annotator_names_are_refused(name):
    with pytest.raises(UserError, match="annotator name"):
        validate_annotator(name)


def test_informative_pairs_both_passed_first_then_close_scores(tmp_path):
    cands = load_candidates(write_samples(tmp_path / "s.jsonl"))
    assert len(cands) == 11                          # the duplicate completion is dropped
    pool = select_pairs(cands, "informative", 2, 0.25, seed=0)
    by = {}
    for p in pool:
        by.setdefault(p.task_id, []).append({p.first.completion, p.second.completion})
    sevens, small, third = (by[t] for t in ("t/sevens", "t/small", "t/third"))
    assert sevens[0] == {SAMPLES[0]["completion"], SAMPLES[1]["completion"]}   # both passed: rank 0
    # then a 0.25 gap, preferring a completion not yet shown (0.75 vs 0.5 over the passed ones)
    assert sevens[1] == {SAMPLES[2]["completion"], SAMPLES[3]["completion"]}
    assert small == [{SAMPLES[4]["completion"], SAMPLES[5]["completion"]}]     # 1.0 vs 0.5: too far apart
    assert third[0] == {SAMPLES[9]["completion"], SAMPLES[11]["completion"]}  # equal partial scores
    assert all(p.first.hash < p.second.hash for p in pool)
    assert [p.pair_id for p in pool] == [p.pair_id for p in select_pairs(cands, "informative", 2, 0.25, seed=0)]
    everything = select_pairs(cands, "random", 0, 0.0, seed=0)
    assert len(everything) == 6 + 3 + 6              # every distinct pair of each task
    assert len(select_pairs(cands, "random", 1, 0.0, seed=0)) == 3
    with pytest.raises(UserError, match="strategy"):
        select_pairs(cands, "hardest", 1, 0.0, seed=0)


def test_order_and_sides_are_per_annotator_and_stable(tmp_path):
    cands = load_candidates(write_samples(tmp_path / "s.jsonl"))
    pool = select_pairs(cands, "random", 0, 0.0, seed=0)
    alice = [p.pair_id for p in annotator_order(pool, "alice", 1)]
    assert alice == [p.pair_id for p in annotator_order(pool, "alice", 1)]
    assert sorted(alice) == sorted(p.pair_id for p in pool)          # same pool for everyone
    orders = {tuple(p.pair_id for p in annotator_order(pool, n, 1)) for n in ("alice", "bob", "carol", "dan")}
    assert len(orders) > 1
    assert len({p.task_id for p in annotator_order(pool, "alice", 1)[:3]}) == 3   # every task's best pair first
    flips = [sides(p, "alice", 1)[0] is p.first for p in pool]
    assert flips == [sides(p, "alice", 1)[0] is p.first for p in pool] and 0 < sum(flips) < len(flips)


def test_cohen_kappa_known_values_and_undefined_cases():
    # 2x2 textbook case: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5 -> kappa 0.4
    x = ["y"] * 5 + ["n"] * 5
    y = ["y"] * 4 + ["n"] + ["y"] * 2 + ["n"] * 3
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert cohen_kappa(x, x) == pytest.approx(1.0)
    assert cohen_kappa(["y", "n"], ["n", "y"]) == pytest.approx(-1.0)
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["tie"] * 3, ["tie"] * 3) is None          # p_e = 1
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    labels = ["first_better", "second_better", "tie", "both_bad"]
    a = [rng.choice(labels) for _ in range(60)]
    b = [v if rng.random() < 0.6 else rng.choice(labels) for v in a]
    assert cohen_kappa(a, b) == pytest.approx(sklearn.cohen_kappa_score(a, b))


# ----------------------------------------------------------------------------- storage


def _cand(i, completion):
    return Candidate(i, sample_hash("t", "p", completion), "t", "p", completion, 1.0, "passed", True, True)


def test_judgment_rows_are_what_the_reward_stage_reads(tmp_path):
    a, b = _cand(0, "    return 1\n"), _cand(3, "    return 2\n")
    folder = tmp_path / "fb"
    for label in ("b_better", "a_better", "tie", "both_bad", "skip"):
        append_judgment(folder, judgment_row(a, b, label, "alice", "  clearer  ", "s.jsonl"))
    rows = lines(folder / "alice.jsonl")
    assert rows[0]["chosen"] == "    return 2\n" and rows[0]["rejected"] == "    return 1\n"
    assert rows[0]["samples"] == {"file": "s.jsonl",
                                  "chosen": {"index": 3, "hash": b.hash, "score": 1.0, "status": "passed"},
                                  "rejected": {"index": 0, "hash": a.hash, "score": 1.0, "status": "passed"}}
    assert rows[0]["shown"] == {"a": a.hash, "b": b.hash} and rows[0]["reason"] == "clearer"
    assert rows[1]["chosen"] == "    return 1\n"
    assert {r["pair_id"] for r in rows} == {row_pair_id(r) for r in rows} == {"~".join(sorted((a.hash, b.hash)))}
    assert rows[0]["timestamp"].endswith("+00:00") and rows[0]["annotator"] == "alice"
    human = read_human_feedback(folder)            # the reward stage's reader: preferences only
    assert [(h["chosen"], h["label"], h["source"]) for h in human] == [
        ("    return 2\n", "b_better", "human"), ("    return 1\n", "a_better", "human")]
    with pytest.raises(UserError, match="label"):
        judgment_row(a, b, "A", "alice", "", "s.jsonl")
    with pytest.raises(UserError, match="reason"):
        judgment_row(a, b, "tie", "alice", "x" * 2001, "s.jsonl")
    with pytest.raises(UserError, match="annotator"):
        judgment_row(a, b, "tie", "../etc/passwd", "", "s.jsonl")


def test_concurrent_appends_never_interleave(tmp_path):
    a, b = _cand(0, "    return 1\n"), _cand(1, "    return 2\n" + "    # pad\n" * 400)   # ~4 KB lines
    row = judgment_row(a, b, "a_better", "alice", "r" * 1500, "s.jsonl")

    def write(k):
        for _ in range(25):
            append_judgment(tmp_path, {**row, "reason": f"{k}"})

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = lines(tmp_path / "alice.jsonl")          # every line parses
    assert len(rows) == 100 and sorted({r["reason"] for r in rows}) == ["0", "1", "2", "3"]


def test_a_torn_last_line_is_dropped_and_a_missing_newline_added(tmp_path):
    a, b = _cand(0, "    return 1\n"), _cand(1, "    return 2\n")
    row = judgment_row(a, b, "a_better", "alice", "", "s.jsonl")
    path = tmp_path / "alice.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(row)[:40], encoding="utf-8")   # a crash mid-write
    append_judgment(tmp_path, row)
    assert len(lines(path)) == 2
    path.write_text(json.dumps(row), encoding="utf-8")                                 # edited by hand
    append_judgment(tmp_path, row)
    assert len(lines(path)) == 2


# ----------------------------------------------------------------------------- the app and its API


def test_judging_resumes_after_a_reload_and_writes_one_file_per_annotator(tmp_path):
    app = make_app(tmp_path)
    total = len(app.pool)
    seen = []
    with running(app) as url:
        for label in ("a_better", "b_better", "tie"):
            st, nxt = call(f"{url}/api/next?annotator=alice")
            assert st == 200 and not nxt["done"]
            pair = nxt["pair"]
            seen.append(pair)
            st, out = call(f"{url}/api/judge", {"annotator": "alice", "pair_id": pair["pair_id"],
                                                "a": pair["a"]["hash"], "label": label, "reason": label})
            assert st == 200 and out["written"]
        # a double click: the same judgment again is not written twice
        st, out = call(f"{url}/api/judge", {"annotator": "alice", "pair_id": seen[-1]["pair_id"],
                                            "a": seen[-1]["a"]["hash"], "label": "tie"})
        assert st == 200 and not out["written"]
        st, bob = call(f"{url}/api/next?annotator=bob")
        call(f"{url}/api/judge", {"annotator": "bob", "pair_id": bob["pair"]["pair_id"],
                                  "a": bob["pair"]["a"]["hash"], "label": "skip"})
    # a new server (a restart, or a reload) continues at alice's fourth pair
    app2 = make_app(tmp_path)
    nxt = app2.next("alice")
    assert nxt["progress"] == {"judged": 3, "left": total - 3}
    order = [p.pair_id for p in annotator_order(app2.pool, "alice", 7)]
    assert [s["pair_id"] for s in seen] == order[:3] and nxt["pair"]["pair_id"] == order[3]
    rows = lines(tmp_path / "human_feedback" / "alice.jsonl")
    assert [r["label"] for r in rows] == ["a_better", "b_better", "tie"]
    assert rows[0]["chosen"] == seen[0]["a"]["completion"] and rows[1]["chosen"] == seen[1]["b"]["completion"]
    assert [r["prompt"] for r in rows] == [s["prompt"] for s in seen]
    by_hash = {}   # the first row of each distinct completion
    for i, s in enumerate(SAMPLES):
        by_hash.setdefault(sample_hash(s["task_id"], s["prompt"], s["completion"]), i)
    for r in rows:
        for side in ("chosen", "rejected"):
            ref = r["samples"][side]
            assert SAMPLES[ref["index"]]["completion"] == r[side] and by_hash[ref["hash"]] == ref["index"]
    assert [r["label"] for r in lines(tmp_path / "human_feedback" / "bob.jsonl")] == ["skip"]


def test_finishing_every_pair_says_done(tmp_path):
    app = make_app(tmp_path)
    for _ in range(len(app.pool)):
        pair = app.next("carol")["pair"]
        app.judge("carol", pair["pair_id"], pair["a"]["hash"], "both_bad")
    assert app.next("carol") == {"annotator": "carol", "done": True,
                                 "progress": {"judged": len(app.pool), "left": 0}}


def test_overlap_strategy_offers_pairs_others_judged_first(tmp_path):
    app = make_app(tmp_path, strategy="overlap")
    judged = []
    for label in ("a_better", "skip", "tie"):
        pair = app.next("alice")["pair"]
        app.judge("alice", pair["pair_id"], pair["a"]["hash"], label)
        judged.append(pair["pair_id"])
    bob = [q.pair_id for q in app.queue("bob")]
    assert bob[:2] == [judged[0], judged[2]]          # alice's skip is no judgment to agree with
    assert sorted(bob) == sorted(p.pair_id for p in app.pool)


def test_api_guards(tmp_path):
    app = make_app(tmp_path)
    with running(app) as url:
        pair = call(f"{url}/api/next?annotator=alice")[1]["pair"]
        good = {"annotator": "alice", "pair_id": pair["pair_id"], "a": pair["a"]["hash"], "label": "tie"}
        assert call(f"{url}/api/next?annotator=../x")[0] == 400
        assert call(f"{url}/api/judge", {**good, "label": "A"})[0] == 400
        assert call(f"{url}/api/judge", {**good, "annotator": "a/b"})[0] == 400
        assert call(f"{url}/api/judge", {**good, "pair_id": "nope~nope"})[0] == 400
        assert call(f"{url}/api/judge", {**good, "a": "0" * 16})[0] == 400
        assert call(f"{url}/api/judge", b"{not json")[0] == 400
        assert call(f"{url}/api/judge", good, {"Content-Type": "text/plain"})[0] == 415   # no cross-site forms
        assert call(f"{url}/api/judge", {**good, "reason": "x" * 3000})[0] == 400
        assert call(f"{url}/api/nothing")[0] == 404
        assert raw(url, "POST", "/api/judge", {"Content-Type": "application/json", "Content-Length": "100000"}) == 413
        assert raw(url, "GET", "/api/next?annotator=alice", {"Host": "evil.example:80"}) == 403   # DNS rebinding
        assert raw(url, "GET", "/api/next?annotator=alice", {}) == 200
        with urllib.request.urlopen(url + "/", timeout=10) as r:
            page = r.read().decode()
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert "/app.js" in page and "http" not in page.replace("http-equiv", "")   # nothing from elsewhere
        for name in ("/app.js", "/style.css"):
            with urllib.request.urlopen(url + name, timeout=10) as r:
                assert r.status == 200 and "http://" not in r.read().decode()
    assert not (tmp_path / "human_feedback" / "alice.jsonl").exists()


def test_make_server_refuses_a_remote_bind_unless_asked(tmp_path):
    app = make_app(tmp_path)
    with pytest.raises(UserError, match="allow-remote"):
        make_server(app, "0.0.0.0", 0)


def test_results_on_request_stored_and_rerun_per_assert(tmp_path):
    app = make_app(tmp_path)
    pair = app.pool[0]    # t/sevens: both passed
    res = app.results(pair.pair_id, pair.second.hash)
    assert res["b"]["status"] == "passed" and res["a"]["score"] == 1.0 and "rerun" not in res["a"]
    from src.sandbox import SandboxParams
    tasks = tmp_path / "train.jsonl"
    tasks.write_text("".join(json.dumps({"task_id": t, "test": test, "entry_point": ep}) + "\n"
                             for t, (ep, test) in TESTS.items()), encoding="utf-8")
    sandbox = SandboxParams(backend="auto", timeout_s=5.0, cpu_time_s=5.0, memory_mb=1024, max_output_kb=64,
                            max_file_mb=16, max_disk_mb=64, max_procs=32, workers=1)
    app = LabelApp(tmp_path / "samples.jsonl", tmp_path / "human_feedback", label_params(rerun=True), 7,
                   tasks, sandbox)
    wrong = app.pool[1]   # 0.5 vs 0.75 on t/sevens
    res = app.results(wrong.pair_id, wrong.first.hash)
    by_score = sorted((res["a"], res["b"]), key=lambda r: r["score"])
    assert [r["rerun"]["assert_results"] for r in by_score] == [[False, True, True, False], [False, True, True, True]]
    assert [r["rerun"]["status"] for r in by_score] == ["failed", "failed"]
    assert by_score[0]["rerun"]["asserts_total"] == 4


def test_a_malformed_feedback_file_fails_at_start(tmp_path):
    (tmp_path / "human_feedback").mkdir()
    (tmp_path / "human_feedback" / "zoe.jsonl").write_text('{"prompt": "p"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="zoe.jsonl:1: missing field 'chosen'"):
        make_app(tmp_path)


# ----------------------------------------------------------------------------- agreement


def _rule(a: dict, b: dict) -> str:
    """A scripted annotator: the higher score wins, then the shorter; equal = tie; both 0 = both bad."""
    if a["score"] != b["score"]:
        return "a_better" if a["score"] > b["score"] else "b_better"
    if a["score"] == 0:
        return "both_bad"
    if len(a["completion"]) != len(b["completion"]):
        return "a_better" if len(a["completion"]) < len(b["completion"]) else "b_better"
    return "tie"


def two_annotator_run(tmp_path) -> dict:
    """alice follows the rule; bob follows it but answers at random on a seeded third of the pairs;
    both judge every pair of 12 tasks x 4 samples through the HTTP API; returns the report."""
    rng = random.Random(3)
    rows = []
    for t in range(12):
        for k in range(4):
            score = rng.choice([0.0, 0.5, 1.0, 1.0])
            rows.append(sample(f"g/{t}", f"def f{t}(x):\n", f"    return x + {k}{' ' * rng.randint(0, 3)}\n",
                               score))
    app = make_app(tmp_path, rows, strategy="random", max_pairs_per_task=3)
    noise = random.Random(11)
    with running(app) as url:
        for who in ("alice", "bob"):
            while True:
                nxt = call(f"{url}/api/next?annotator={who}")[1]
                if nxt["done"]:
                    break
                pair = nxt["pair"]
                a, b = (app.by_hash[pair[s]["hash"]] for s in "ab")
                label = _rule(dataclasses.asdict(a), dataclasses.asdict(b))
                if who == "bob" and noise.random() < 1 / 3:
                    label = noise.choice(["a_better", "b_better", "tie", "both_bad"])
                st, _ = call(f"{url}/api/judge", {"annotator": who, "pair_id": pair["pair_id"],
                                                  "a": pair["a"]["hash"], "label": label})
                assert st == 200
    metrics = tmp_path / "metrics" / "human_feedback.json"
    human_feedback.cli(["--feedback", str(tmp_path / "human_feedback"), "--metrics", str(metrics)])
    return json.loads(metrics.read_text())


def test_two_annotators_agreement_report(tmp_path):
    report = two_annotator_run(tmp_path)
    n = 36
    assert report["judgments"] == 2 * n and report["pairs_judged"] == n
    assert report["pairs_judged_by_2_or_more"] == n
    assert set(report["annotators"]) == {"alice", "bob"}
    assert all(a["judgments"] == n and a["repeats"] == 0 for a in report["annotators"].values())
    assert sum(report["labels"].values()) == 2 * n
    agree = report["agreement"]["alice|bob"]
    assert agree["shared_pairs"] == n
    # recompute kappa from the stored files, from scratch
    by = {}
    for who in ("alice", "bob"):
        for r in lines(tmp_path / "human_feedback" / f"{who}.jsonl"):
            if r["label"] in ("tie", "both_bad"):
                lab = r["label"]
            else:
                lab = "first" if r["samples"]["chosen"]["hash"] < r["samples"]["rejected"]["hash"] else "second"
            by.setdefault(r["pair_id"], {})[who] = lab
    x = [v["alice"] for v in by.values()]
    y = [v["bob"] for v in by.values()]
    p_o = sum(a == b for a, b in zip(x, y)) / n
    p_e = sum(x.count(c) * y.count(c) for c in set(x) | set(y)) / n ** 2
    assert agree["observed_agreement"] == pytest.approx(p_o, abs=1e-4)
    assert agree["cohen_kappa"] == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-4)
    # the figures of this seeded run (bob answers a third of the pairs at random)
    assert (agree["observed_agreement"], agree["cohen_kappa"]) == (0.8333, 0.7616)
    assert report["cohen_kappa_mean"] == agree["cohen_kappa"]
    assert sum(sum(row.values()) for row in agree["confusion"].values()) == n
    assert report["preference_judgments"] == len(read_human_feedback(tmp_path / "human_feedback"))


def test_report_of_an_empty_folder(tmp_path):
    (tmp_path / "fb").mkdir()
    out = agreement_report(tmp_path / "fb")
    assert out["judgments"] == 0 and out["agreement"] == {} and out["cohen_kappa_mean"] is None
    with pytest.raises(UserError, match="not found"):
        agreement_report(tmp_path / "missing")


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def label_section(monkeypatch):
    """params.yaml's allowed sections, with `label` (until src/params.py lists it)."""
    import src.params as params_mod
    if "label" not in params_mod.SECTIONS:
        monkeypatch.setattr(params_mod, "SECTIONS", params_mod.SECTIONS + ("label",))


def test_cli_builds_the_app_from_params_and_flags(tmp_path, label_section):
    from src.label import build_app
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"base": {"seed": 1, "num_threads": 1, "checkpoint_steps": 0, "resume": False, "accelerate": "cpu", "temperature": 0.8, "prompt_format": "completion", "instruction": ""},
                                  "label": {**PARAMS, "port": 8765}}), encoding="utf-8")   # JSON is YAML
    samples = write_samples(tmp_path / "samples.jsonl")
    app, p = build_app(str(params), str(samples), str(tmp_path / "fb"), None, "dana",
                       {"port": 0, "strategy": "random", "host": None})
    assert (p.port, p.strategy, p.host, app.seed, app.default_annotator) == (0, "random", "127.0.0.1", 1, "dana")
    assert app.config(None)["annotator"] == "dana" and not app.config(None)["rerun"]
    with pytest.raises(UserError, match="dvc repro reward"):
        build_app(str(params), str(tmp_path / "none.jsonl"), str(tmp_path / "fb"), None, None, {})
    with pytest.raises(UserError, match="label.port"):
        build_app(str(params), str(samples), str(tmp_path / "fb"), None, None, {"port": -1})


def test_the_repository_params_label_section_parses():
    import src.params as params_mod
    from src.label import is_loopback
    if "label" not in params_mod.SECTIONS:
        pytest.skip("src/params.py does not list the label section yet")
    p = params_mod.load_section(LabelParams, "label", Path(__file__).resolve().parents[1] / "params.yaml")
    assert is_loopback(p.host)
