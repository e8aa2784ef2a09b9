"""Tokenizer boundary stability, the scratch model, save/load with resolved params, generation."""
import json

import pytest

from src.generation import truncate_completion

PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a plus b."""\n'
BODY = "    total = a + b\n    return total\n"


def test_truncate_completion_stops_at_top_level_line():
    assert truncate_completion(BODY + "\ndef other():\n    pass\n") == BODY + "\n"
    assert truncate_completion(BODY + "print(add(1, 2))") == BODY
    assert truncate_completion(BODY) == BODY


@pytest.fixture(scope="module")
def tiny():
    from src.models import scratch_model, train_tokenizer
    texts = [PROMPT + BODY, "def mul(x, y):\n    return x * y\n"] * 20
    tok = train_tokenizer(texts, vocab_size=300, min_frequency=2)
    return tok, scratch_model(tok, n_layer=1, d_model=32, n_head=2, d_ff=64, max_len=128, seed=0)


def test_prompt_tokens_are_a_prefix_of_prompt_plus_completion(tiny):
    """Newlines are isolated before byte-level BPE, so the prompt/completion boundary never moves."""
    tok, _ = tiny
    p = tok(PROMPT, add_special_tokens=False).input_ids
    pc = tok(PROMPT + BODY, add_special_tokens=False).input_ids
    assert pc[:len(p)] == p
    assert tok.decode(pc) == PROMPT + BODY


def test_scratch_model_is_llama_with_rotary_positions(tiny):
    tok, model = tiny
    assert model.config.model_type == "llama"
    assert model.config.vocab_size == len(tok)
    assert model.config.eos_token_id == tok.eos_token_id


def test_save_and_load_carry_params_and_versions(tiny, tmp_path):
    from src.generation import generate
    from src.models import load_policy, save_policy
    tok, model = tiny
    save_policy(model, tok, tmp_path / "m", {"sft": {"n_layer": 1}})
    meta = json.loads((tmp_path / "m" / "resolved_params.json").read_text())
    assert meta["params"] == {"sft": {"n_layer": 1}} and "torch" in meta["versions"]
    model2, tok2 = load_policy(str(tmp_path / "m"))
    assert tok2.padding_side == "left"
    a = generate(model2, tok2, [PROMPT, "def f():\n"], n=3, temperature=1.0, top_p=1.0,
                 max_new_tokens=8, batch_size=4, seed=5)
    b = generate(model2, tok2, [PROMPT, "def f():\n"], n=3, temperature=1.0, top_p=1.0,
                 max_new_tokens=8, batch_size=4, seed=5)
    assert a == b and len(a) == 2 and all(len(x) == 3 for x in a)
    g = generate(model2, tok2, [PROMPT], n=2, temperature=0.0, top_p=1.0, max_new_tokens=8, batch_size=4, seed=0)
    assert g[0][0] == g[0][1]


def test_missing_or_corrupt_model_folder_is_a_user_error(tmp_path):
    from src.io import UserError
    from src.models import load_policy
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        load_policy(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot load model"):
        load_policy(str(tmp_path / "bad"))
