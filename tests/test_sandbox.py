"""The sandbox: hostile programs per backend (one batch each), per-assert results, backend choice."""
import os
import shutil
import signal
import socket
import tempfile
import threading
import uuid
import warnings
from pathlib import Path

import pytest

import src.sandbox as sb
from hostile import CORRECT, PROGRAMS, PROMPT, TEST
from src.io import UserError
from src.params import load_section
from src.sandbox import Job, SandboxParams, execute, resolve_backend

ROOT = Path(__file__).resolve().parents[1]
AS_ROOT = os.geteuid() == 0


def params(backend: str, **kw) -> SandboxParams:
    base = dict(backend=backend, timeout_s=1.0, cpu_time_s=1.0, memory_mb=1024, max_output_kb=64,
                max_file_mb=16, max_disk_mb=64, max_procs=32, workers=2)
    return SandboxParams(**{**base, **kw})


BACKENDS = ["process", pytest.param("bwrap", marks=pytest.mark.skipif(
    not sb._bwrap_usable(params("bwrap")), reason="bubblewrap is missing or unusable here"))]


def run(jobs, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the process backend's warning
        return execute(jobs, params(backend))


def sandbox_processes() -> list[str]:
    """Processes of this process's sample uids, and anything a worker forked that is still there."""
    ppid, info = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:80]
        except (OSError, IndexError):
            continue
        ppid[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
        info[int(pid)] = (uid, cmd)
    own = range(sb._sample_uid(0), sb._sample_uid(256))  # this process's: not a pipeline's beside it
    left = [f"{p} uid={u} {c}" for p, (u, c) in info.items() if u in own]
    for pool in sb._POOLS.values():
        for w in pool.workers:
            top = [w.proc.pid]  # bwrap -> its init -> the worker's python
            while top and "_worker_main" not in info.get(top[0], (0, ""))[1]:
                top = [q for q in ppid if ppid[q] == top[0]]
            below = [q for q in ppid if top and ppid[q] == top[0]]
            while below:  # whatever lives below a worker between jobs is a sample's leftover
                q = below.pop()
                left.append(f"{q} below worker {top[0]}: {info[q][1]}")
                below += [r for r in ppid if ppid[r] == q]
    return left


@pytest.fixture(scope="module", params=BACKENDS)
def hostile(request):
    """Every hostile program in one execute() call, then a correct one, then what they left."""
    backend = request.param
    outside = Path(tempfile.mkdtemp(prefix="sandbox-outside-", dir="/var/tmp"))  # on disk: not under bwrap's /tmp
    outside.chmod(0o755)
    sentinel = outside / "sentinel.txt"
    sentinel.write_text("keep")
    token = uuid.uuid4().hex
    secret = f"SANDBOX_SECRET_{token}"
    os.environ[secret] = "1"
    server = socket.create_server(("127.0.0.1", 0))
    progs = [h for h in PROGRAMS if AS_ROOT or not h.needs_own_uid]
    fill = dict(sentinel=sentinel, outside=outside, port=server.getsockname()[1], token=token, secret=secret)
    jobs = [Job(PROMPT, h.completion.format(**fill), TEST, "f") for h in progs] + [Job(PROMPT, CORRECT, TEST, "f")]
    try:
        results = run(jobs, backend)
        leftovers = sandbox_processes()
        after = run([Job(PROMPT, CORRECT, TEST, "f")], backend)[0]
        shared = [f"{d}/pwned-{token}" for d in ("/tmp", "/var/tmp", "/dev/shm") if Path(f"{d}/pwned-{token}").exists()]
        workdirs = [str(p) for pool in sb._POOLS.values() for w in pool.workers if w.tmp for p in Path(w.tmp).iterdir()]
        yield dict(backend=backend, results={h.name: r for h, r in zip(progs, results)}, last=results[-1],
                   after=after, leftovers=leftovers, outside=sorted(os.listdir(outside)),
                   sentinel=sentinel.read_text() if sentinel.exists() else None, shared=shared, workdirs=workdirs)
    finally:
        sb.close_pools()
        server.close()
        del os.environ[secret]
        shutil.rmtree(outside, ignore_errors=True)


def test_enough_hostile_programs():
    assert len(PROGRAMS) >= 30 and len({h.name for h in PROGRAMS}) == len(PROGRAMS)


@pytest.mark.parametrize("name", [h.name for h in PROGRAMS])
def test_hostile_program_is_not_passed(hostile, name):
    if name not in hostile["results"]:
        pytest.skip("needs a dedicated sample uid: run the tests as root")
    r = hostile["results"][name]
    expected = next(h for h in PROGRAMS if h.name == name).statuses
    assert not r.passed and r.score < 1.0
    assert r.status in expected, f"{name}: {r.status} ({r.detail})"


def test_harness_keeps_working(hostile):
    assert hostile["last"].status == "passed" and hostile["last"].score == 1.0
    assert hostile["after"].status == "passed"


def test_no_process_survives(hostile):
    assert hostile["leftovers"] == []


def test_nothing_outside_the_workdir_changes(hostile):
    assert hostile["sentinel"] == "keep"
    assert hostile["outside"] == ["sentinel.txt"]
    assert hostile["shared"] == []
    assert hostile["workdirs"] == []  # the process backend's per-sample folders are deleted


def test_output_is_bounded(hostile):
    huge = hostile["results"]["huge_output"]
    assert 0 < len(huge.output) <= 64 * 1024
    assert len(hostile["results"]["binary_output"].output) <= 64 * 1024


NO_ASSERT = "def check(candidate):\n    if candidate(1) != 2:\n        raise ValueError\n"
LOOP = ("def check(candidate):\n    for i in range(10):\n        assert candidate(i) == i + 1, i\n"
        "    assert candidate(0) == 1\n")
TYPO = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidte(2) == 3\n"
PARTIAL_CASES = [  # completion, test, status, assert_results
    ("    return x + 1 if x < 3 else 0\n", TEST, "failed", [True, True, False]),
    ("    return 0 if x == 1 else x + 1\n", TEST, "failed", [False, True, True]),  # goes on after a failure
    ("    if x == 2:\n        raise ValueError\n    return x + 1\n", TEST, "runtime_error", [True, False, False]),
    ("    return x + 1 if x != 5 else 0\n", LOOP, "failed", [False, True]),  # an assert in a loop is one site
    ("    return x + 1\n", NO_ASSERT, "passed", []),
    ("    return x\n", NO_ASSERT, "runtime_error", []),
    ("    return (\n", TEST, "syntax_error", [False, False, False]),
    ("    return x + 1\n", TYPO, "runtime_error", [True, False]),  # a broken test: NameError
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_assert_results(backend):
    jobs = [Job(PROMPT, c, t, "f") for c, t, _, _ in PARTIAL_CASES]
    first, second = run(jobs, backend), run(jobs, backend)
    for (c, _, status, asserts), r in zip(PARTIAL_CASES, first):
        assert (r.status, r.assert_results) == (status, asserts), (c, r.detail)
        assert r.asserts_total == len(asserts) and r.asserts_passed == sum(asserts)
    assert first[0].score == pytest.approx(2 / 3) and first[2].score == pytest.approx(1 / 3)
    assert first[4].score == 1.0 and first[5].score == 0.0  # no assert in check: passed or not

    def strip(rs):
        return [{**r.to_dict(), "duration_s": 0} for r in rs]
    assert strip(first) == strip(second)  # deterministic
    assert set(first[0].to_dict()) >= {"status", "passed", "asserts_passed", "asserts_total", "score"}
    sb.close_pools()


def test_backend_choice(monkeypatch):
    with pytest.warns(RuntimeWarning, match="weaker 'process' backend"):
        assert resolve_backend(params("process")) == "process"
    monkeypatch.setattr(sb, "_bwrap_usable", lambda p: False)
    with pytest.raises(UserError, match="bubblewrap"):
        resolve_backend(params("bwrap"))
    with pytest.warns(RuntimeWarning):
        assert resolve_backend(params("auto")) == "process"


def test_params_yaml_section():
    p = load_section(SandboxParams, "sandbox", ROOT / "params.yaml")
    assert p.memory_mb <= 4096 and p.backend in ("auto", "bwrap", "process")


def test_empty_job_list():
    assert execute([], params("process")) == []


def test_dead_worker_is_replaced():
    """A worker that dies mid-job (here: killed from outside) reports the job killed and is replaced."""
    p = params("bwrap" if sb._bwrap_usable(params("bwrap")) else "process", workers=1, timeout_s=5.0)
    sleepy = Job(PROMPT, "    import time\n    time.sleep(3)\n    return x + 1\n", TEST, "f")
    assert run([Job(PROMPT, CORRECT, TEST, "f")], p.backend)[0].passed  # starts the pool
    worker = next(iter(sb._POOLS.values())).workers[0]
    seen = []
    threading.Timer(0.3, lambda: seen.extend(sandbox_processes())).start()  # the check sees a live sample
    threading.Timer(0.6, os.killpg, (worker.proc.pid, signal.SIGKILL)).start()
    dead, after = run([sleepy, Job(PROMPT, CORRECT, TEST, "f")], p.backend)
    assert dead.status == "killed" and "worker" in dead.detail and after.passed
    assert seen and sandbox_processes() == []
    sb.close_pools()


def test_same_uid_mode_cleans_up(monkeypatch):
    """Without root the samples keep the worker's uid: leftovers are found through the subreaper
    tree instead (exercised here by pretending not to be root; only harmless programs)."""
    monkeypatch.setattr(sb.os, "geteuid", lambda: 1000)
    names = {"double_fork_daemon", "setsid_daemons_then_exit", "shell_background_job", "unremovable_tree"}
    progs = [h for h in PROGRAMS if h.name in names]
    results = run([Job(PROMPT, h.completion, TEST, "f") for h in progs] + [Job(PROMPT, CORRECT, TEST, "f")], "process")
    assert all(r.status in h.statuses for h, r in zip(progs, results)) and results[-1].passed
    assert next(iter(sb._POOLS.values())).workers[0].uid is None
    assert sandbox_processes() == []
    assert [p for pool in sb._POOLS.values() for w in pool.workers for p in Path(w.tmp).iterdir()] == []
    sb.close_pools()


ANY = "    class Any:\n        def __eq__(self, other):\n            return True\n        __hash__ = object.__hash__\n"
LIST_TEST = "def check(candidate):\n    assert list(candidate(1)) == [2, 3]\n"
ARG_TEST = "def check(candidate):\n    xs = [1]\n    candidate(xs)\n    assert xs == [2]\n"
HELPER_PROMPT = "def double(v):\n    return v * 2\n\n\ndef f(x):\n"
HELPER_TEST = "def check(candidate):\n    assert double(candidate(1)) == 4\n"
BY_NAME_TEST = "def check(candidate):\n    assert f(1) == 2\n    assert candidate(2) == 3\n"
OWN_OBJECT_TEST = "def check(candidate):\n    assert candidate(lambda v: v + 1) == 2\n"
PLAIN_TEST = ("def check(candidate):\n    from collections import Counter, defaultdict\n"
              "    from fractions import Fraction\n    from decimal import Decimal\n"
              "    assert candidate(1) == [Counter('ab'), defaultdict(int, {1: 2}), 1j, Fraction(1, 3), Decimal('0.5'),\n"
              "                            (None, b'x', frozenset({1})), {'k': {2.5}}, range(2), True]\n")
PLAIN = ("    from collections import Counter, defaultdict\n    from fractions import Fraction\n"
         "    from decimal import Decimal\n    return [Counter('ab'), defaultdict(int, {1: 2}), 1j, Fraction(1, 3),"
         " Decimal('0.5'), (None, b'x', frozenset({1})), {'k': {2.5}}, range(2), True]\n")
FORGERY_CASES = [  # prompt, completion, test, status
    (PROMPT, "    yield x + 1\n    yield x + 2\n", LIST_TEST, "passed"),                   # a generator
    (PROMPT, ANY + "    yield x + 1\n    yield Any()\n", LIST_TEST, "forged_value"),   # ... yielding a forgery
    (PROMPT, "    return map(lambda v: v + x, [1, 2])\n", LIST_TEST, "passed"),
    (PROMPT, ANY + "    return [x + 1, Any()]\n", LIST_TEST, "forged_value"),
    (PROMPT, "    x[0] = 2\n", ARG_TEST, "passed"),                                     # mutates its argument
    (PROMPT, ANY + "    x[0] = Any()\n", ARG_TEST, "forged_value"),
    (HELPER_PROMPT, "    return 2\n", HELPER_TEST, "passed"),
    (HELPER_PROMPT, "    return 0\n\n\ndef double(v):\n    return 4\n", HELPER_TEST, "failed"),  # redefines a helper
    (PROMPT, CORRECT, BY_NAME_TEST, "passed"),                                              # HumanEval/33's shape
    (PROMPT, "    return x(1)\n", OWN_OBJECT_TEST, "passed"),                              # the test's own lambda
    (PROMPT, PLAIN, PLAIN_TEST, "passed"),                                                 # stdlib value types
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_verdict_cannot_be_forged(backend):
    """Values the test compares must be plain data on every path (returned, nested, yielded, written
    into an argument); a test calls the prompt's helpers, not the candidate's versions of them."""
    results = run([Job(p, c, t, "f") for p, c, t, _ in FORGERY_CASES], backend)
    got = [(r.status, r.detail) for r in results]
    assert [s for s, _ in got] == [s for *_, s in FORGERY_CASES], got
    forged = [r for r in results if r.status == "forged_value"]
    assert all(r.score == 0 and not r.passed and "not plain data" in r.detail for r in forged)
    sb.close_pools()


UNREACHED_TEST = "def check(candidate):\n    for v in candidate(0):\n        assert v > 0\n    assert candidate(5) == [1]\n"


@pytest.mark.parametrize("completion,status,asserts", [
    ("    return [] if x == 0 else [1]\n", "passed", [True, True]),  # check returned: an unreached site is fine
    ("    return [] if x == 0 else [0]\n", "failed", [False, False]),  # no credit for an assert that never ran
    ("    return [1] if x == 0 else [0]\n", "failed", [True, False]),
])
def test_no_credit_for_an_assert_that_never_ran(completion, status, asserts):
    r = run([Job(PROMPT, completion, UNREACHED_TEST, "f")], "process")[0]
    assert (r.status, r.assert_results) == (status, asserts), r.detail
    sb.close_pools()


def test_a_script_under_tmp_keeps_the_private_tmp():
    """sys.path holding /tmp itself (a script run from there) must not bind all of /tmp into the sandbox."""
    sys_path = list(sb.sys.path)
    try:
        sb.sys.path.insert(0, "/tmp")
        assert "/tmp" not in sb._bound_under(sb._HIDDEN)
    finally:
        sb.sys.path[:] = sys_path
