"""File I/O shared by every stage: JSONL reading with file:line errors, atomic writes, the timing record."""
from __future__ import annotations

import gzip
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator


_UMASK = os.umask(0)
os.umask(_UMASK)


class UserError(Exception):
    """A mistake in the user's input (params, data files, paths): shown as one line, no traceback."""


def _open_text(path: Path, mode: str = "rt"):
    if str(path).endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def iter_jsonl(path: str | os.PathLike, fields: dict[str, type | tuple[type, ...]] | None = None) -> Iterator[dict]:
    """Yield one dict per non-blank line of a .jsonl or .jsonl.gz file.

    Args:
        path: the file.
        fields: required field name -> accepted type(s); a missing field or a wrong type raises
            UserError naming the file, the line and the field.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise UserError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
                for name, typ in (fields or {}).items():
                    if name not in row:
                        raise UserError(f"{path}:{lineno}: missing field '{name}'")
                    if not isinstance(row[name], typ) or (typ is int and isinstance(row[name], bool)):
                        want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
                        raise UserError(
                            f"{path}:{lineno}: field '{name}' must be {want}, got {type(row[name]).__name__}")
                yield row
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def read_jsonl(path, fields=None) -> list[dict]:
    """All rows of a JSONL file; see iter_jsonl."""
    return list(iter_jsonl(path, fields))


def read_json(path):
    """A JSON file; a missing or malformed one is a UserError naming it (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (run `dvc repro` first)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON ({e.msg} at line {e.lineno})") from None


def _atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False) -> None:
    """Write through a temp file in the same folder, fsync, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            if not binary and str(path).endswith(".gz"):
                raise ValueError("use a binary writer for .gz")
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_jsonl(path, rows: Iterable[dict]) -> None:
    """Atomically write rows as JSONL (gzip when the name ends in .gz)."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if str(path).endswith(".gz"):
        _atomic_write(path, lambda f: f.write(gzip.compress(lines.encode("utf-8"), mtime=0)), binary=True)
    else:
        _atomic_write(path, lambda f: f.write(lines))


def write_json(path, obj: Any) -> None:
    """Atomically write JSON with sorted keys, so the same result gives the same bytes."""
    _atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def write_text(path, text: str) -> None:
    """Atomically write a text file."""
    _atomic_write(path, lambda f: f.write(text))


def run_cli(main: Callable[[], Any]) -> None:
    """Run a stage's main(); a UserError is printed as one line and exits 2 (no traceback)."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    from src import distributed
    distributed.finish()  # leaves the process group when `accelerate launch` started several processes


def read_split(path, fields=None) -> list[dict]:
    """Rows of a data split; an empty or missing split is a user error naming the file."""
    rows = read_jsonl(path, fields)
    if not rows:
        raise UserError(f"{path}: the split is empty (check the prepare params)")
    return rows


# ---------------------------------------------------------------- timing (never in metrics/ or a DVC out)
# Wall-clock-derived log keys: runtimes, throughputs, step and phase times. They differ run to run, so they
# stay out of the committed plot data and the metrics and go to the stage's timing record instead.
_TIMING_KEY = re.compile(r"(runtime|_per_second|(^|[_/])time([_/].*)?)$")


def is_timing_key(key: str) -> bool:
    """True for train_runtime, eval_samples_per_second, step_time, time_generate_s and the like."""
    return bool(_TIMING_KEY.search(key))


def timing_keys(values: dict) -> dict:
    """The wall-clock-derived numbers of a trainer's log or TrainOutput.metrics, rounded."""
    return {k: round(v, 4) for k, v in values.items()
            if is_timing_key(k) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def machine() -> str:
    """CPU model, cores, GPUs (when torch is already loaded) and torch's version, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    parts = [cpu, f"{os.cpu_count()} cores"]
    torch = sys.modules.get("torch")   # not imported here: prepare runs without torch
    if torch is not None and torch.cuda.is_available():
        parts.append(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
    from importlib.metadata import PackageNotFoundError, version
    try:
        parts.append(f"torch {version('torch')}")
    except PackageNotFoundError:
        parts.append("no torch")
    return "; ".join(parts)


def write_timing(path, started: float, **work) -> None:
    """Record a stage's wall time since `started` (a time.perf_counter() value) and its work (optimizer
    steps, completions sampled, sandbox programs run, ...) as JSON at `path`; nothing when path is None.
    The record lies outside metrics/ and every DVC out: times are not reproducible. `python -m src.report
    --timing` gathers the records into reports/timing.json."""
    if path is None:
        return
    record = {"wall_s": round(time.perf_counter() - started, 3), **work, "machine": machine(),
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(path, record)
