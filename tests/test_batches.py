"""The SFT trainers' batches (src.training.sft_trainer, `train_sampling_strategy: batch_rebalance`): each
optimizer step's batch is drawn at random and only split by length across the accumulated micro-batches,
so it trains the weights one batch would while computing less padding; the draws follow the run's data
seed."""
import pytest
import torch

from tests.test_ppo import tiny_llama

# one-line to many-line bodies, so a random batch mixes short and long rows
TASKS = [{"prompt": f"def f{i}(x):\n", "completion": "".join(f"    x = x + {j}\n" for j in range(1 + i % 7)) + "    return x\n"}
         for i in range(48)]


@pytest.fixture(scope="module")
def tok():
    from src.models import train_tokenizer
    return train_tokenizer([t["prompt"] + t["completion"] for t in TASKS] * 5, vocab_size=300, min_frequency=1)


def trainer(tok, tmp_path, micro: int, accumulate: int, data_seed: int = 0, steps: int = 3):
    from datasets import Dataset
    from trl import SFTConfig

    from src.training import sft_trainer
    tok.padding_side = "right"
    cfg = SFTConfig(output_dir=str(tmp_path / f"out{micro}x{accumulate}s{data_seed}"), max_steps=steps,
                    per_device_train_batch_size=micro, gradient_accumulation_steps=accumulate,
                    train_sampling_strategy="batch_rebalance", learning_rate=1e-3, max_length=128,
                    completion_only_loss=True, seed=0, data_seed=data_seed, report_to="none", save_strategy="no",
                    logging_steps=1, use_cpu=True, bf16=False)
    return sft_trainer(model=tiny_llama(tok), args=cfg, processing_class=tok, train_dataset=Dataset.from_list(TASKS))


def steps_of(t, accumulate: int) -> list[list[list[int]]]:
    """The sampler's micro-batches (dataset indices), grouped per optimizer step."""
    micro = list(t._get_train_sampler(t.train_dataset))
    return [micro[i:i + accumulate] for i in range(0, len(micro), accumulate)]


def test_micro_batches_split_each_random_batch_by_length_with_less_padding(tok, tmp_path):
    whole = trainer(tok, tmp_path, 16, 1)
    one = steps_of(whole, 1)
    four = steps_of(trainer(tok, tmp_path, 4, 4), 4)
    assert len(one) == len(four) == 3  # 48 rows, batches of 16
    # the same rows per optimizer step, whatever the split
    assert [sorted(i for m in step for i in m) for step in one] == [sorted(i for m in step for i in m) for step in four]
    length = [len(r) for r in whole.train_dataset["input_ids"]]

    def padded(step):
        return sum(len(m) * max(length[i] for i in m) for m in step)
    assert sum(map(padded, four)) < 0.8 * sum(map(padded, one))  # micro-batches of similar lengths
    assert all(len(m) >= 1 for step in four for m in step)


def test_accumulated_micro_batches_train_the_weights_of_one_batch(tok, tmp_path):
    a, b = trainer(tok, tmp_path, 16, 1), trainer(tok, tmp_path, 4, 4)
    before = {k: v.clone() for k, v in a.model.state_dict().items()}
    a.train()
    b.train()
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert any(not torch.equal(before[k], wa[k]) for k in wa)  # training moved the weights
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-5, msg=k)


def test_batches_follow_the_data_seed(tok, tmp_path):
    assert trainer(tok, tmp_path, 4, 4, data_seed=7)._get_train_sampler().seed == 7
    seed0, again, seed1 = (steps_of(trainer(tok, tmp_path, 4, 4, data_seed=s), 4) for s in (0, 0, 1))
    assert seed0 == again
    assert seed0 != seed1
