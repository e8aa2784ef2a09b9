"""End to end: the labelling page in headless Chromium (Debian's `chromium`, driven by Playwright for
Python; no browser download). Buttons and keys, a reason, results on request, a reload that resumes,
a name typed into the page, two annotators at once, and what lands in the JSONL files.

Skipped when /usr/bin/chromium or playwright is missing (`make sysdeps` and requirements.txt install
them). The README screenshot comes from the same set-up:
    LABEL_SCREENSHOT=docs/label.png python -m pytest tests/test_label_browser.py -k screenshot
"""
import json
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install playwright; no browser download)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found (Debian: apt-get install chromium; `make sysdeps` does)",
                allow_module_level=True)

from test_label import SAMPLES, TESTS, label_params, lines, make_app, running  # noqa: E402

from src.label import LabelApp  # noqa: E402
from src.sandbox import SandboxParams  # noqa: E402

TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def watch(page, base: str) -> list[str]:
    """Problems seen by the page: console errors, failed requests, requests to other origins."""
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"failed: {r.url}"))
    page.on("request", lambda r: r.url.startswith(base) or problems.append(f"elsewhere: {r.url}"))
    return problems


def shown(page) -> dict:
    """The pair on screen: its id and the two completions as displayed."""
    page.wait_for_selector("#task:not([hidden])", timeout=TIMEOUT_MS)
    return page.evaluate("""() => ({pair_id: document.querySelector('#task').dataset.pairId,
                                    a: document.querySelector('#code-a').textContent,
                                    b: document.querySelector('#code-b').textContent,
                                    progress: document.querySelector('#progress').textContent})""")


def after(page, previous: dict) -> dict:
    """Wait until the page shows another pair (or is done), then describe it."""
    page.wait_for_function("(old) => document.querySelector('#task').dataset.pairId !== old"
                           " || !document.querySelector('#done').hidden", arg=previous["pair_id"],
                           timeout=TIMEOUT_MS)
    return shown(page) if page.is_hidden("#done") else {"pair_id": None}


def test_buttons_keys_reason_reload_and_resume(browser, tmp_path):
    app = make_app(tmp_path)
    n = len(app.pool)
    with running(app) as url:
        page = browser.new_page()
        problems = watch(page, url)
        page.goto(f"{url}/?annotator=alice")
        seen = [shown(page)]
        assert seen[0]["progress"] == f"0 judged · {n} left"
        assert page.locator("#code-a span.tok-keyword", has_text="return").count() >= 1   # highlighted
        assert page.is_hidden("#result-a")
        page.click("#show-results")                          # execution results on request
        page.wait_for_selector("#result-a .status", timeout=TIMEOUT_MS)
        assert page.inner_text("#result-a .status") in ("passed", "failed")
        page.click("button[data-label=a_better]")            # a button
        seen.append(after(page, seen[-1]))
        page.keyboard.press("2")                              # a key
        seen.append(after(page, seen[-1]))
        page.fill("#reason", "same behaviour; 1 key typed here is text")   # keys in the box are text
        page.press("#reason", "Escape")
        page.keyboard.press("t")
        seen.append(after(page, seen[-1]))
        page.reload()                                         # resumes at the fourth pair
        again = shown(page)
        assert again["pair_id"] == seen[-1]["pair_id"] and again["progress"] == f"3 judged · {n - 3} left"
        assert page.input_value("#reason") == ""
        page.keyboard.press("4")
        seen.append(after(page, seen[-1]))
        page.click("button[data-label=skip]")
        page.wait_for_selector("#done:not([hidden])", timeout=TIMEOUT_MS)
        assert page.inner_text("#progress") == f"{n} judged · 0 left"
        page.close()
    assert n == 5 and not problems, problems
    rows = lines(tmp_path / "human_feedback" / "alice.jsonl")
    assert [r["label"] for r in rows] == ["a_better", "b_better", "tie", "both_bad", "skip"]
    assert [r["pair_id"] for r in rows] == [s["pair_id"] for s in seen]
    assert (rows[0]["chosen"], rows[0]["rejected"]) == (seen[0]["a"], seen[0]["b"])
    assert (rows[1]["chosen"], rows[1]["rejected"]) == (seen[1]["b"], seen[1]["a"])
    assert rows[2]["reason"] == "same behaviour; 1 key typed here is text"
    assert all(r["annotator"] == "alice" and r["task_id"] and r["samples"]["file"].endswith("samples.jsonl")
               for r in rows)
    completions = [s["completion"] for s in SAMPLES]
    assert all(completions[r["samples"]["chosen"]["index"]] == r["chosen"] for r in rows)


def test_name_typed_in_the_page_and_two_annotators_at_once(browser, tmp_path):
    app = make_app(tmp_path)
    with running(app) as url:
        bob = browser.new_context().new_page()
        problems = watch(bob, url)
        bob.goto(url + "/")
        bob.wait_for_selector("#login:not([hidden])", timeout=TIMEOUT_MS)
        bob.fill("#name-input", "../bob")                  # not a safe file name: the form refuses it
        bob.press("#name-input", "Enter")
        assert bob.is_hidden("#task")
        bob.fill("#name-input", "bob")
        bob.press("#name-input", "Enter")
        last = {"bob": shown(bob)}
        assert bob.url.endswith("?annotator=bob")
        carol = browser.new_context().new_page()
        problems += watch(carol, url)
        carol.goto(f"{url}/?annotator=carol")
        last["carol"] = shown(carol)
        for k in range(len(app.pool)):                    # interleaved, through keys
            for name, page in (("bob", bob), ("carol", carol)):
                page.keyboard.press("1" if k % 2 == 0 else "3")
                last[name] = after(page, last[name])
        assert last == {"bob": {"pair_id": None}, "carol": {"pair_id": None}}
        bob.reload()                                       # the URL keeps the name: still done
        bob.wait_for_selector("#done:not([hidden])", timeout=TIMEOUT_MS)
    assert not problems, problems
    folder = tmp_path / "human_feedback"
    assert sorted(p.name for p in folder.iterdir()) == ["bob.jsonl", "carol.jsonl"]
    for name in ("bob", "carol"):
        rows = lines(folder / f"{name}.jsonl")
        assert [r["label"] for r in rows] == ["a_better", "tie", "a_better", "tie", "a_better"]
        assert {r["annotator"] for r in rows} == {name}
    from src.feedback import agreement_report
    report = agreement_report(folder)
    assert report["agreement"]["bob|carol"]["shared_pairs"] == len(app.pool)


@pytest.mark.skipif(not os.environ.get("LABEL_SCREENSHOT"), reason="set LABEL_SCREENSHOT=<png> to take it")
def test_screenshot(browser, tmp_path):
    """The README's picture: a pair with per-assert results shown and a reason being typed."""
    tasks = tmp_path / "train.jsonl"
    tasks.write_text("".join(json.dumps({"task_id": t, "test": test, "entry_point": ep}) + "\n"
                             for t, (ep, test) in TESTS.items()), encoding="utf-8")
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in SAMPLES), encoding="utf-8")
    sandbox = SandboxParams(backend="auto", timeout_s=5.0, cpu_time_s=5.0, memory_mb=1024, max_output_kb=64,
                            max_file_mb=16, max_disk_mb=64, max_procs=32, workers=1)
    app = LabelApp(samples, tmp_path / "human_feedback", label_params(rerun=True), 7, tasks, sandbox)
    while True:   # judge until the partially correct pair of keep_sevens is up
        nxt = app.next("alice")["pair"]
        if nxt["task_id"] == "t/sevens" and "x == 7" in nxt["a"]["completion"] + nxt["b"]["completion"]:
            break
        app.judge("alice", nxt["pair_id"], nxt["a"]["hash"], "a_better")
    with running(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 600}, device_scale_factor=1)
        page.goto(f"{url}/?annotator=alice")
        shown(page)
        page.keyboard.press("e")
        page.wait_for_selector("#result-b .asserts", timeout=TIMEOUT_MS)
        page.fill("#reason", "A is closer, but -7 % 10 == 3 in Python: both drop negative numbers ending in 7")
        page.screenshot(path=os.environ["LABEL_SCREENSHOT"], full_page=True)
        page.close()
