"""Hostile completions for `def f(x):` whose test wants f(x) == x + 1 (three asserts).

Each program either returns the right answer only if its attack worked (so `passed` would mean the
sandbox failed) or attempts an attack and returns a wrong answer (the test then checks the attack
left no trace: no surviving process, no file outside its workdir). Placeholders filled by the test:
{sentinel} (a file that must survive), {outside} (a folder that must stay unchanged), {port} (a
listening loopback port on the host), {token} (a unique string), {secret} (an env var name of the
caller that must not leak).
"""
from typing import NamedTuple

PROMPT = "def f(x):\n"
TEST = """
def check(candidate):
    assert candidate(1) == 2
    assert candidate(2) == 3
    assert candidate(3) == 4
"""
CORRECT = "    return x + 1\n"


class Hostile(NamedTuple):
    name: str
    completion: str
    statuses: frozenset  # acceptable verdicts
    needs_own_uid: bool = False  # only safe with a dedicated sample uid (the harness runs as root)


def _h(name, completion, *statuses, needs_own_uid=False):
    return Hostile(name, completion, frozenset(statuses), needs_own_uid)


RT, FAIL, TO, KILL, MEM, SYN = "runtime_error", "failed", "timeout", "killed", "memory_exceeded", "syntax_error"
FORGED = "forged_value"
# a class whose instances equal anything (the forgeries below return one in various disguises)
_ANY = "    class Any:\n        def __eq__(self, other):\n            return True\n        __hash__ = object.__hash__\n"

PROGRAMS = [
    # wrong, crashing, looping
    _h("wrong_answer", "    return x\n", FAIL),
    _h("crash", "    return 1 // 0\n", RT),
    _h("syntax_error", "    return (x +\n", SYN),
    _h("busy_loop", "    while True:\n        pass\n", TO),
    _h("sleep_forever", "    import time\n    time.sleep(1000)\n", TO),
    _h("sigstop_self", "    import os, signal\n    os.kill(os.getpid(), signal.SIGSTOP)\n", TO),
    _h("ignore_sigterm_and_loop", "    import signal\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
       "    while True:\n        pass\n", TO),
    _h("cpu_in_c", "    return 7 ** (10 ** 9)\n", TO, MEM),
    # memory and recursion
    _h("one_huge_allocation", "    return len(bytearray(1 << 36))\n", MEM),
    _h("growing_allocation", "    keep = []\n    while True:\n        keep.append(bytearray(1 << 24))\n", MEM, TO),
    _h("recursion", "    return f(x)\n", RT),
    _h("recursion_unlimited", "    import sys\n    sys.setrecursionlimit(10 ** 8)\n"
       "    def g(n):\n        return g(n + 1) + 1\n    return g(0)\n", KILL, MEM, RT, TO),
    # processes
    _h("fork_bomb", "    import os\n    while True:\n        try:\n            os.fork()\n        except OSError:\n"
       "            pass\n", TO, needs_own_uid=True),
    _h("many_threads", "    import threading, time\n    for _ in range(200):\n"
       "        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n    return x + 1\n",
       RT, needs_own_uid=True),
    _h("double_fork_daemon", "    import os, time\n    if os.fork() == 0:\n        os.setsid()\n"
       "        if os.fork() == 0:\n            time.sleep(60)\n        os._exit(0)\n    time.sleep(0.2)\n"
       "    return None\n", FAIL),
    _h("setsid_daemons_then_exit", "    import os, time\n    for _ in range(5):\n        if os.fork() == 0:\n"
       "            os.setsid()\n            time.sleep(60)\n            os._exit(0)\n    os._exit(0)\n", RT),
    _h("shell_background_job", "    import subprocess\n"
       "    subprocess.Popen(['sh', '-c', 'nohup sleep 60 >/dev/null 2>&1 &'], start_new_session=True)\n"
       "    return None\n", FAIL),
    _h("kill_parent", "    import os, signal\n    os.kill(os.getppid(), signal.SIGKILL)\n    return x + 1\n",
       RT, KILL),
    _h("kill_own_group", "    import os, signal\n    os.killpg(0, signal.SIGKILL)\n    return x + 1\n", KILL),
    _h("kill_everything", "    import os, signal\n    os.kill(-1, signal.SIGKILL)\n    return None\n",
       FAIL, KILL, RT, needs_own_uid=True),
    # network
    _h("loopback_connect", "    import socket\n    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
       "    return x + 1\n", RT),
    _h("internet_connect", "    import socket\n    socket.create_connection(('1.1.1.1', 53), timeout=1).close()\n"
       "    return x + 1\n", RT),
    _h("dns_lookup", "    import socket\n    socket.getaddrinfo('pypi.org', 443)\n    return x + 1\n", RT),
    # files
    _h("delete_sentinel", "    import os\n    os.remove('{sentinel}')\n    return x + 1\n", RT),
    _h("overwrite_sentinel", "    open('{sentinel}', 'w').write('pwned')\n    return x + 1\n", RT),
    _h("write_outside", "    open('{outside}/pwned', 'w').write('pwned')\n    return x + 1\n", RT),
    _h("write_shared_tmp", "    import os\n    for d in ('/tmp', '/var/tmp', '/dev/shm'):\n        try:\n"
       "            open(d + '/pwned-{token}', 'w').write('x')\n        except OSError:\n            pass\n"
       "    return None\n", FAIL),
    _h("shell_rm_outside", "    import subprocess\n    subprocess.run(['rm', '-rf', '{outside}'])\n"
       "    return x + 1 if not __import__('os').path.exists('{sentinel}') else None\n", FAIL),
    _h("fill_disk", "    try:\n        for i in range(100):\n            with open(f'fill{{i}}', 'wb') as fh:\n"
       "                fh.write(b'x' * (1 << 20))\n    except OSError:\n        pass\n    return None\n", FAIL),
    _h("file_too_big", "    open('big', 'wb').write(b'x' * (64 << 20))\n    return x + 1\n", RT),
    _h("unremovable_tree", "    import os\n    if not os.path.exists('a'):\n        os.makedirs('a/b')\n"
       "        open('a/b/c', 'w').write('x')\n        os.chmod('a/b', 0)\n        os.chmod('a', 0)\n"
       "    return None\n", FAIL),
    _h("read_shadow", "    return x + 1 if open('/etc/shadow').read() else None\n", RT),
    # verdict forging
    _h("sys_exit_0", "    return None\nimport sys\nsys.exit(0)\n", RT),
    _h("os_exit_0", "    return None\nimport os\nos._exit(0)\n", RT),
    _h("raise_systemexit_in_check", "    raise SystemExit(0)\n", RT),
    _h("builtin_exit", "    exit()\n", RT),
    _h("forge_stdout", "    print('passed')\n    print('{{\"passed\": true, \"status\": \"passed\"}}')\n"
       "    import os\n    os._exit(0)\n", RT),
    _h("forge_result_fds", "    import os\n    for fd in range(3, 64):\n        try:\n"
       "            os.write(fd, b'D\\nx D\\n')\n        except OSError:\n            pass\n    os._exit(0)\n",
       KILL, RT),
    _h("close_result_fds", "    import os\n    for fd in range(3, 64):\n        try:\n            os.close(fd)\n"
       "        except OSError:\n            pass\n    return x + 1\n", RT),
    _h("atexit_exit_0", "    return None\nimport atexit, os\natexit.register(lambda: os._exit(0))\n", FAIL),
    _h("excepthook", "    return 1 // 0\nimport sys\nsys.excepthook = lambda *a: print('passed')\n", RT),
    _h("alarm_handler_exit_0", "    import time\n    time.sleep(0.5)\n    return None\nimport os, signal\n"
       "signal.signal(signal.SIGALRM, lambda *a: os._exit(0))\nsignal.setitimer(signal.ITIMER_REAL, 0.05)\n", RT),
    _h("redefine_assertionerror", "    return None\nimport builtins\n"
       "builtins.AssertionError = type('X', (Exception,), {{}})\n__builtins__['AssertionError'] = None\n", FAIL),
    _h("redefine_check", "    return None\ndef check(candidate):\n    pass\nimport builtins\n"
       "builtins.check = lambda c: None\n", FAIL),
    _h("redefine_builtins", "    return None\nimport builtins\nbuiltins.bool = lambda v: True\n"
       "builtins.print = None\nbuiltins.isinstance = None\n__builtins__.clear()\n", FAIL, RT),
    _h("patch_harness_module", "    return None\nimport sys\nm = sys.modules['src.sandbox']\n"
       "m._verdict = m._child = m._install_guard = m._make_guard = None\nm._REC = 'nothing'\n", FAIL, FORGED),
    _h("walk_frames", "    import sys\n    f = sys._getframe()\n    while f.f_back:\n        f = f.f_back\n"
       "    return x + 1\n", RT),
    _h("traceback_frames", "    try:\n        1 / 0\n    except ZeroDivisionError as e:\n"
       "        f = e.__traceback__.tb_frame.f_back\n    return x + 1\n", RT),
    _h("gc_objects", "    import gc\n    gc.get_objects()\n    return x + 1\n", KILL),
    _h("ctypes_memory", "    import ctypes\n    ctypes.string_at(id(x), 8)\n    return x + 1\n", KILL),
    _h("proc_self_mem", "    open('/proc/self/mem', 'rb')\n    return x + 1\n", KILL),
    _h("settrace", "    import sys\n    sys.settrace(lambda *a: None)\n    return x + 1\n", KILL),
    # values that lie about equality, truth or hashing (a test compares what the candidate returns)
    _h("eq_always_true", _ANY + "    return Any()\n", FORGED),
    _h("int_subclass_eq", "    class Int(int):\n        def __eq__(self, other):\n            return True\n"
       "        __hash__ = int.__hash__\n    return Int(0)\n", FORGED),
    _h("str_subclass", "    class S(str):\n        __eq__ = lambda s, o: True\n        __hash__ = str.__hash__\n"
       "    return S('no')\n", FORGED),
    _h("bool_true_object", "    class T:\n        def __bool__(self):\n            return True\n    return T()\n", FORGED),
    _h("nested_in_list", _ANY + "    return [[1, (Any(),)]]\n", FORGED),
    _h("nested_in_dict_key", _ANY + "    return {{Any(): 1}}\n", FORGED),
    _h("nested_in_dict_value", _ANY + "    return {{'k': [Any()]}}\n", FORGED),
    _h("dict_subclass", "    class D(dict):\n        __eq__ = lambda s, o: True\n    return D()\n", FORGED),
    _h("type_made_on_the_fly", "    return type('T', (float,), {{'__eq__': lambda s, o: True}})(0.0)\n", FORGED),
    _h("generator_of_forgeries", _ANY + "    def g():\n        yield x + 1\n        yield Any()\n    return g()\n",
       FORGED, FAIL),
    _h("map_of_forgeries", _ANY + "    return map(lambda v: Any(), [x])\n", FORGED, FAIL),
    _h("patch_stdlib_function", "    import math\n    math.isclose = lambda *a, **k: True\n    return None\n", FORGED),
    _h("patch_stdlib_class", "    import collections\n    collections.Counter.__eq__ = lambda s, o: True\n"
       "    return x + 1\n", FORGED),
    # environment and I/O
    _h("read_caller_env", "    import os, subprocess\n"
       "    out = subprocess.run(['sh', '-c', 'env; cat /proc/*/environ'], capture_output=True).stdout\n"
       "    return x + 1 if '{secret}' in os.environ or b'{secret}' in out else None\n", FAIL),
    _h("read_stdin", "    return x + 1 if input() is not None else None\n", RT),
    _h("huge_output", "    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n", TO),
    _h("binary_output", "    import os\n    os.write(2, bytes(range(256)) * 1000)\n    return None\n", FAIL),
]
