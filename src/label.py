"""The labelling page: judge pairs of completions in a local web page (for the reward model's human head).

    python -m src.label --params params.yaml --samples data/reward/samples.jsonl \
        --feedback data/human_feedback --tasks data/prepared/rl.jsonl [--annotator NAME] [--port N]

`serve` (the default) shows one pair at a time: the prompt, candidates A and B side by side, their
execution results on request, and A better / B better / tie / both bad / skip (buttons or keys
1-5) with an optional reason. Each judgment is appended to `<feedback>/<annotator>.jsonl`; a reload
resumes at the annotator's first unjudged pair. Binds to 127.0.0.1; anything else needs
`--allow-remote` (there is no login: whoever reaches the page can write judgments).
The `human_feedback` stage (src/human_feedback.py) reports the annotators' agreement.

Standard library only (http.server); the page (src/label_static/) loads nothing from elsewhere.
"""
from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import signal
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from src.feedback import (LABELS, Candidate, Pair, annotator_order, append_judgment, feedback_path,
                          judgment_row, load_candidates, read_judgments, row_pair_id, select_pairs, sides,
                          validate_annotator)
from src.io import UserError, read_jsonl, run_cli
from src.pairs import read_human_feedback
from src.params import BaseParams, bounded, parse_section, read_params

STATIC = Path(__file__).resolve().with_name("label_static")
_FILES = {"/": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}
MAX_BODY = 64 * 1024
RERUN_FIELDS = {"task_id": (str, int), "test": str, "entry_point": str}   # a task to re-run (any task file)
# Nothing from elsewhere: scripts, styles, fetches and frames from this origin only.
_SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'",
                     "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                     "Cache-Control": "no-store"}


@dataclasses.dataclass
class LabelParams:
    host: str                                   # 127.0.0.1: this machine only (others need --allow-remote)
    port: int = bounded(0, 65535)               # 0 = any free port
    # informative: both passed, or partial scores within max_score_gap; random: any two;
    # overlap: pairs other annotators judged first (for agreement), then informative
    strategy: Literal["informative", "random", "overlap"]
    max_pairs_per_task: int = bounded(0)        # 0 = every qualifying pair
    max_score_gap: float = bounded(0, 1)        # informative: wider gaps are left to the execution pairs
    rerun: bool                                 # results on request re-run both in the sandbox (per assert)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LabelApp:
    """The page's state and API, independent of HTTP: pairs, per-annotator queues, judgments.

    Args:
        samples_path: the candidates (rows {task_id, prompt, completion, score, status, ...}).
        feedback_dir: where `<annotator>.jsonl` files are appended.
        p: the label params; seed: base.seed (pair pool, per-annotator order and sides).
        tasks_path: human-eval-format tasks (test, entry_point) for re-running on request; optional.
        sandbox: SandboxParams for the re-run; needed when p.rerun and tasks_path.
        default_annotator: the name the page starts with when none is given.
    """

    def __init__(self, samples_path, feedback_dir, p: LabelParams, seed: int, tasks_path=None, sandbox=None,
                 default_annotator: str | None = None):
        self.samples_file = str(samples_path)
        self.feedback_dir = Path(feedback_dir)
        self.p, self.seed, self.sandbox = p, seed, sandbox
        self.default_annotator = validate_annotator(default_annotator) if default_annotator else None
        if self.feedback_dir.is_dir():
            read_human_feedback(self.feedback_dir)   # a malformed file fails now, with file:line, not mid-session
        self.by_hash = {c.hash: c for c in load_candidates(samples_path)}
        self.pool = select_pairs(list(self.by_hash.values()), p.strategy, p.max_pairs_per_task, p.max_score_gap,
                                 seed)
        self.tasks = {}
        if p.rerun and tasks_path and Path(tasks_path).exists():
            if sandbox is None:
                raise ValueError("re-running needs the sandbox params")
            self.tasks = {t["task_id"]: t for t in read_jsonl(tasks_path, RERUN_FIELDS)}
        self._lock = threading.Lock()
        self._orders: dict[str, list[Pair]] = {}
        self._files: dict[Path, tuple] = {}       # path -> (stat key, {pair_id: label}) in file order
        self._writers: dict[str, threading.Lock] = {}
        self._reruns: dict[str, dict] = {}

    # -- reading judgments (cached until the file changes)

    def _judged_in(self, path: Path) -> dict[str, str | None]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._files.get(path)
        if hit and hit[0] == key:
            return hit[1]
        judged = {row_pair_id(r): r.get("label") for r in read_judgments(path)}
        with self._lock:
            self._files[path] = (key, judged)
        return judged

    def judged(self, annotator: str) -> dict[str, str | None]:
        return self._judged_in(feedback_path(self.feedback_dir, annotator))

    def queue(self, annotator: str) -> list[Pair]:
        """This annotator's pairs in order (judged ones included)."""
        with self._lock:
            order = self._orders.get(annotator)
        if order is None:
            order = annotator_order(self.pool, annotator, self.seed)
            with self._lock:
                self._orders[annotator] = order
        if self.p.strategy != "overlap":
            return order
        mine = feedback_path(self.feedback_dir, annotator)
        first: dict[str, Pair] = {}
        for path in sorted(self.feedback_dir.glob("*.jsonl")):
            if path == mine:
                continue
            for pid, label in self._judged_in(path).items():
                pair = self.pair(pid, strict=False)
                if label != "skip" and pair is not None:
                    first.setdefault(pid, pair)
        return list(first.values()) + [q for q in order if q.pair_id not in first]

    def pair(self, pid, strict: bool = True) -> Pair | None:
        """The pair named `pid` (two sample hashes of one task), or UserError (None if not strict)."""
        parts = pid.split("~") if isinstance(pid, str) else []
        cands = [self.by_hash.get(h) for h in parts]
        if len(cands) != 2 or None in cands or cands[0].task_id != cands[1].task_id or parts[0] >= parts[1]:
            if strict:
                raise UserError(f"unknown pair {pid!r}")
            return None
        return Pair(pid, cands[0], cands[1], -1)

    def _ab(self, pid, a_hash) -> tuple[Candidate, Candidate]:
        pair = self.pair(pid)
        if a_hash == pair.first.hash:
            return pair.first, pair.second
        if a_hash == pair.second.hash:
            return pair.second, pair.first
        raise UserError(f"sample {a_hash!r} is not in pair {pid!r}")

    # -- the API

    def config(self, annotator: str | None) -> dict:
        return {"annotator": annotator or self.default_annotator, "strategy": self.p.strategy,
                "labels": list(LABELS), "rerun": bool(self.tasks)}

    def next(self, annotator: str) -> dict:
        """The annotator's first unjudged pair (A/B as they see it) and their progress."""
        validate_annotator(annotator)
        judged = self.judged(annotator)
        todo = [q for q in self.queue(annotator) if q.pair_id not in judged]
        out = {"annotator": annotator, "done": not todo,
               "progress": {"judged": len(judged), "left": len(todo)}}
        if todo:
            a, b = sides(todo[0], annotator, self.seed)
            out["pair"] = {"pair_id": todo[0].pair_id, "task_id": a.task_id, "prompt": a.prompt,
                           "a": {"hash": a.hash, "completion": a.completion},
                           "b": {"hash": b.hash, "completion": b.completion}}
        return out

    def judge(self, annotator: str, pid: str, a_hash: str, label: str, reason: str = "") -> dict:
        """Append the judgment unless this annotator already judged the pair (a double click or a
        second tab): `written` says which."""
        validate_annotator(annotator)
        a, b = self._ab(pid, a_hash)
        row = judgment_row(a, b, label, annotator, reason, self.samples_file)
        with self._lock:
            writer = self._writers.setdefault(annotator, threading.Lock())
        with writer:
            written = pid not in self.judged(annotator)
            if written:
                append_judgment(self.feedback_dir, row)
        return {"written": written, "label": label, "pair_id": pid}

    def results(self, pid: str, a_hash: str) -> dict:
        """Execution results of A and B: the stored ones, plus per-assert detail from a sandbox
        re-run when the task file is loaded and label.rerun is on."""
        a, b = self._ab(pid, a_hash)
        return {"a": self._result(a), "b": self._result(b)}

    def _result(self, c: Candidate) -> dict:
        out = {"score": c.score, "status": c.status, "passed": c.passed, "syntax_ok": c.syntax_ok}
        task = self.tasks.get(c.task_id)
        if task is None:
            return out
        with self._lock:
            cached = self._reruns.get(c.hash)
        if cached is None:
            from src.sandbox import Job, execute

            r = execute([Job(c.prompt, c.completion, task["test"], task["entry_point"])], self.sandbox)[0]
            cached = {"rerun": {"status": r.status, "asserts_passed": r.asserts_passed,
                                "asserts_total": r.asserts_total, "assert_results": r.assert_results,
                                "detail": r.detail}}
            with self._lock:
                self._reruns[c.hash] = cached
        return {**out, **cached}


class _Handler(BaseHTTPRequestHandler):
    server_version = "rlhf-code-label"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):   # quiet: the terminal shows the URL and errors only
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in _SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, code: int, obj) -> None:
        self._send(code, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")

    def _host_ok(self) -> bool:
        # A DNS-rebinding page on another site reaches 127.0.0.1 under its own host name: refuse it.
        allowed = self.server.allowed_hosts
        return allowed is None or self.headers.get("Host", "") in allowed

    def _dispatch(self, route) -> None:
        if not self._host_ok():
            return self._json(403, {"error": "unexpected Host header"})
        try:
            route()
        except UserError as e:
            self._json(400, {"error": str(e)})
        except Exception as e:   # a bug: say so on the page and in the terminal, keep serving
            traceback.print_exc()
            self._json(500, {"error": f"internal error: {type(e).__name__}: {e}"})

    def do_GET(self) -> None:
        self._dispatch(self._get)

    def do_HEAD(self) -> None:
        self._dispatch(self._get)

    def do_POST(self) -> None:
        self._dispatch(self._post)

    def _get(self) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        app: LabelApp = self.server.app
        if url.path in _FILES:
            name, ctype = _FILES[url.path]
            return self._send(200, (STATIC / name).read_bytes(), ctype)
        if url.path == "/favicon.ico":
            return self._send(204, b"", "image/x-icon")
        if url.path == "/api/config":
            return self._json(200, app.config(q.get("annotator")))
        if url.path == "/api/next":
            return self._json(200, app.next(q.get("annotator", "")))
        if url.path == "/api/results":
            return self._json(200, app.results(q.get("pair_id", ""), q.get("a", "")))
        self._json(404, {"error": f"not found: {url.path}"})

    def _post(self) -> None:
        if urlsplit(self.path).path != "/api/judge":
            return self._json(404, {"error": "not found"})
        # JSON only: a cross-site form cannot send it without a CORS preflight, which we never grant
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            return self._json(415, {"error": "send application/json"})
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._json(411, {"error": "Content-Length required"})
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            return self._json(413, {"error": f"body larger than {MAX_BODY} bytes"})
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            raise UserError("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise UserError("the body must be a JSON object")
        out = self.server.app.judge(body.get("annotator", ""), body.get("pair_id", ""), body.get("a", ""),
                                    body.get("label", ""), body.get("reason") or "")
        self._json(200, out)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def make_server(app: LabelApp, host: str, port: int, allow_remote: bool = False,
                verbose: bool = False) -> ThreadingHTTPServer:
    """A bound, not yet serving, threaded server for `app` (port 0 = any free port)."""
    if not is_loopback(host) and not allow_remote:
        raise UserError(f"label.host {host!r} is not a loopback address: the page has no login, so anyone "
                        "who reaches it can write judgments; pass --allow-remote to serve it anyway")
    try:
        srv = (_Server6 if ":" in host else _Server)((host, port), _Handler)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); choose another with --port") from None
    srv.app, srv.verbose = app, verbose
    bound = srv.server_address[1]
    srv.allowed_hosts = None if not is_loopback(host) else {
        f"{h}:{bound}" for h in ("127.0.0.1", "localhost", "[::1]")}
    return srv


def url_of(srv: ThreadingHTTPServer, annotator: str | None = None) -> str:
    host, port = srv.server_address[:2]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/" + (f"?annotator={annotator}" if annotator else "")


def build_app(params_path: str, samples: str, feedback: str, tasks: str | None, annotator: str | None,
              overrides: dict) -> tuple[LabelApp, LabelParams]:
    raw = read_params(params_path)
    base = parse_section(BaseParams, raw.get("base"), "base")
    label_raw = raw.get("label")
    if not isinstance(label_raw, dict):
        raise UserError(f"{params_path}: the 'label' section is missing")
    p = parse_section(LabelParams, {**label_raw, **{k: v for k, v in overrides.items() if v is not None}}, "label")
    sandbox = None
    if p.rerun and tasks and Path(tasks).exists():
        from src.sandbox import SandboxParams
        sandbox = parse_section(SandboxParams, raw.get("sandbox"), "sandbox")
    if not Path(samples).exists():
        raise UserError(f"{samples}: no samples to label; run `dvc repro reward` first (or pass --samples FILE)")
    return LabelApp(samples, feedback, p, base.seed, tasks, sandbox, annotator), p


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def serve(params_path: str, samples: str, feedback: str, tasks: str | None, annotator: str | None = None,
          host: str | None = None, port: int | None = None, strategy: str | None = None,
          allow_remote: bool = False, verbose: bool = False) -> None:
    """Serve the page until Ctrl-C."""
    app, p = build_app(params_path, samples, feedback, tasks, annotator,
                       {"host": host, "port": port, "strategy": strategy})
    srv = make_server(app, p.host, p.port, allow_remote, verbose)
    print(f"labelling {len(app.pool)} pairs ({p.strategy}) from {samples}; "
          f"judgments go to {feedback}/<annotator>.jsonl")
    if p.rerun and not app.tasks:
        print(f"note: {tasks} not found: results on request show the stored scores only")
    print(f"open {url_of(srv, annotator)}  (Ctrl-C to stop)", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)   # `kill` stops it as cleanly as Ctrl-C
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped; track the judgments with `dvc add data/human_feedback/<annotator>.jsonl`")
    finally:
        srv.server_close()


def cli(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("serve", "-h", "--help"):
        argv.insert(0, "serve")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the labelling page (the default)")
    s.add_argument("--params", default="params.yaml")
    s.add_argument("--samples", default="data/reward/samples.jsonl")
    s.add_argument("--feedback", default="data/human_feedback")
    s.add_argument("--tasks", default="data/prepared/rl.jsonl",
                   help="the sampled tasks (reward.prompts: rl.jsonl, train.jsonl), for per-assert re-runs (label.rerun)")
    s.add_argument("--annotator", help="the name the page starts with (each annotator can set their own)")
    s.add_argument("--host", help="overrides label.host")
    s.add_argument("--port", type=int, help="overrides label.port")
    s.add_argument("--strategy", help="overrides label.strategy")
    s.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host (no login!)")
    s.add_argument("--verbose", action="store_true", help="log every request")
    a = ap.parse_args(argv)
    run_cli(lambda: serve(a.params, a.samples, a.feedback, a.tasks, a.annotator, a.host, a.port,
                          a.strategy, a.allow_remote, a.verbose))


if __name__ == "__main__":
    cli()
