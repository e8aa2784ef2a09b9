"""JSONL reading names file:line:field; writes are atomic."""
import gzip
import json
import os

import pytest

from src.io import UserError, read_jsonl, read_split, write_json, write_jsonl


def test_roundtrip_plain_and_gzip(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "é"}]
    for name in ("r.jsonl", "r.jsonl.gz"):
        write_jsonl(tmp_path / name, rows)
        assert read_jsonl(tmp_path / name, {"a": int, "b": str}) == rows
    assert gzip.decompress((tmp_path / "r.jsonl.gz").read_bytes()).decode().count("\n") == 2


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}\n{"a": 2\n', "f.jsonl:2: malformed JSON"),
    ('{"a": 1}\n\n[1, 2]\n', "f.jsonl:3: expected a JSON object, got list"),
    ('{"b": 1}\n', "f.jsonl:1: missing field 'a'"),
    ('{"a": "1"}\n', "f.jsonl:1: field 'a' must be int, got str"),
    ('{"a": true}\n', "f.jsonl:1: field 'a' must be int, got bool"),
])
def test_bad_rows_name_file_line_field(tmp_path, text, message):
    (tmp_path / "f.jsonl").write_text(text)
    with pytest.raises(UserError) as e:
        read_jsonl(tmp_path / "f.jsonl", {"a": int})
    assert message in str(e.value)


def test_missing_and_empty_split(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        read_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(UserError, match="e.jsonl: the split is empty"):
        read_split(tmp_path / "e.jsonl")


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"x": 1})

    class Boom:
        def __repr__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        write_json(target, {"x": Boom()})
    assert json.loads(target.read_text()) == {"x": 1}
    assert os.listdir(tmp_path) == ["m.json"]


def test_json_is_byte_stable(tmp_path):
    write_json(tmp_path / "a.json", {"b": 1, "a": [1.5, 2]})
    write_json(tmp_path / "b.json", {"a": [1.5, 2], "b": 1})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
