"""Packing: bin packing, the packed row, per-example isolation, and packed == unpacked (fp32, CPU)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train.packing import (
    IGNORE_INDEX,
    collate_packed,
    fill_rate,
    pack_bins,
)
from train.packing_check import prepare_model_for_packing
from train.varlen_attention import VARLEN_ATTENTION, register_varlen_attention

# ---------------------------------------------------------------- bin packing


def test_pack_bins_best_fit_decreasing_exact() -> None:
    # Longest first: 8 -> new bin 0, 7 -> new bin 1, 5 -> new bin 2, 3 -> bin 1 (room 3, the
    # tightest fit), 2 -> bin 0 (room 2), 1 -> bin 2 (the only bin with room left).
    assert pack_bins([5, 3, 8, 2, 7, 1], 10) == [[2, 3], [4, 1], [0, 5]]


def test_pack_bins_ties_break_by_index_and_tightest_bin() -> None:
    # Equal lengths go in index order; 4 fits bins with room 4 (bin 1) and 6 (bin 0): tightest wins.
    assert pack_bins([4, 6, 4, 4], 10) == [[1, 0], [2, 3]]


def test_pack_bins_rejects_too_long_and_empty_examples() -> None:
    with pytest.raises(ValueError, match=r"example 1 has 11 tokens.*--max_seq_length 10"):
        pack_bins([3, 11], 10)
    with pytest.raises(ValueError, match="example 0 has length 0"):
        pack_bins([0], 10)
    assert pack_bins([], 10) == []


def test_fill_rate_exact() -> None:
    lengths = [5, 3, 8, 2, 7, 1]
    assert fill_rate(lengths, pack_bins(lengths, 10), 10) == pytest.approx(26 / 30)
    assert fill_rate([], [], 10) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=64), max_size=200),
    max_len=st.integers(min_value=64, max_value=300),
)
def test_pack_bins_properties(lengths: list[int], max_len: int) -> None:
    bins = pack_bins(lengths, max_len)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))  # each example exactly once
    assert all(sum(lengths[i] for i in b) <= max_len for b in bins)
    assert pack_bins(lengths, max_len) == bins  # deterministic
    # Best fit never opens a bin while an earlier one could take the example, so any two bins
    # together overflow: at most one bin is half empty or worse.
    assert sum(1 for b in bins if sum(lengths[i] for i in b) <= max_len // 2) <= 1


# ---------------------------------------------------------------- the packed row


def test_collate_packed_exact_row() -> None:
    examples = [
        {"input_ids": [11, 12, 13], "labels": [-100, 12, 13]},
        {"input_ids": [21, 22], "labels": [21, 22]},  # fully supervised: its first label must drop
    ]
    row = collate_packed(examples)
    assert set(row) == {"input_ids", "labels", "position_ids"}
    assert row["input_ids"].tolist() == [[11, 12, 13, 21, 22]]
    assert row["labels"].tolist() == [[-100, 12, 13, -100, 22]]
    assert row["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert row["input_ids"].dtype == torch.long

    varlen = collate_packed(examples, varlen_kwargs=True)
    assert varlen["cu_seq_lens_q"].tolist() == [0, 3, 5]
    assert varlen["cu_seq_lens_q"].dtype == torch.int32
    assert varlen["max_length_q"] == varlen["max_length_k"] == 3


def test_collate_packed_rejects_bad_examples() -> None:
    with pytest.raises(ValueError, match="at least one example"):
        collate_packed([])
    with pytest.raises(ValueError, match=r"example 0: input_ids \(2\) and labels \(1\)"):
        collate_packed([{"input_ids": [1, 2], "labels": [1]}])


# ---------------------------------------------------------------- model-level checks


@pytest.fixture(scope="module")
def tiny_llama_path(tiny_llama):
    """The session's tiny Llama (tests/train/conftest.py): 2 layers, 4 heads, 2 KV heads."""
    return tiny_llama


def _load(path, attn: str):
    from transformers import LlamaForCausalLM

    register_varlen_attention()
    model = LlamaForCausalLM.from_pretrained(str(path), dtype=torch.float32, attn_implementation=attn)
    model.train()  # dropout is 0 in Llama; train mode is where the cache trap bites
    return model


def _examples(vocab: int, lengths: list[tuple[int, int]], seed: int) -> list[dict[str, list[int]]]:
    """Examples with `prompt` masked tokens then `response` supervised tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for prompt, response in lengths:
        ids = torch.randint(3, vocab, (prompt + response,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def _leak(model, examples, **call_kwargs) -> float:
    """Largest change in the logits of examples 1.. when example 0's tokens are replaced."""
    row = collate_packed(examples)
    row.pop("labels")
    row.update(call_kwargs)
    other = dict(row, input_ids=row["input_ids"].clone())
    n0 = len(examples[0]["input_ids"])
    other["input_ids"][0, :n0] = (other["input_ids"][0, :n0] + 7) % model.config.vocab_size
    with torch.no_grad():
        a = model(**row).logits[0, n0:]
        b = model(**other).logits[0, n0:]
    return (a - b).abs().max().item()


@pytest.mark.parametrize("attn", ["eager", "sdpa", VARLEN_ATTENTION])
def test_packed_examples_do_not_see_each_other(tiny_llama_path, attn: str) -> None:
    model = _load(tiny_llama_path, attn)
    examples = _examples(model.config.vocab_size, [(4, 5), (3, 6), (2, 2)], seed=1)
    # Teeth: the same check on a call that does not isolate must report a leak. Left as the
    # config says (use_cache on), transformers skips the per-example mask for eager and sdpa;
    # for every implementation, positions that never restart make one long sequence.
    contiguous = torch.arange(sum(len(e["input_ids"]) for e in examples)).unsqueeze(0)
    assert _leak(model, examples, position_ids=contiguous, use_cache=False) > 1e-3
    if attn != VARLEN_ATTENTION:
        assert model.config.use_cache is True
        assert _leak(model, examples) > 1e-3
        # An all-ones 2D attention mask also switches the per-example mask off.
        ones = torch.ones(1, contiguous.shape[1], dtype=torch.long)
        assert _leak(model, examples, attention_mask=ones, use_cache=False) > 1e-3

    prepare_model_for_packing(model)
    assert model.config.use_cache is False
    assert _leak(model, examples) == 0.0

    # And each example's logits equal those of the example run alone.
    row = collate_packed(examples, varlen_kwargs=attn == VARLEN_ATTENTION)
    row.pop("labels")
    with torch.no_grad():
        packed = model(**row).logits[0]
        start = 0
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            torch.testing.assert_close(packed[start : start + len(alone)], alone, atol=1e-5, rtol=0)
            start += len(alone)


def test_check_replaces_an_attention_that_lets_examples_see_each_other(tiny_llama_path) -> None:
    # "paged|eager" builds no per-example mask from position_ids: the check measures the leak
    # on the model itself and trains with packed_varlen instead; the decision records both.
    model = _load(tiny_llama_path, "sdpa")
    model.config._attn_implementation_internal = "paged|eager"
    decision = prepare_model_for_packing(model)
    assert model.config._attn_implementation == VARLEN_ATTENTION == decision.attn_implementation
    first, used = decision.measurements
    assert first.implementation == "paged|eager" and first.leak > 1e-2 and not first.passed
    # Isolated rows differ from separate ones only by float summation order (0 on one thread;
    # ~1e-7 where other tests left torch's kernels choosing other blockings).
    assert used.implementation == VARLEN_ATTENTION and used.leak < 1e-5 and used.passed
    examples = _examples(model.config.vocab_size, [(4, 5), (3, 6), (2, 2)], seed=1)
    assert _leak(model, examples) < 1e-5


def _supervised_loss_sum(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Sum of next-token cross-entropy over supervised tokens, and their count."""
    labels = batch["labels"]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    targets = labels[:, 1:]
    loss_sum = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return loss_sum, int((targets != IGNORE_INDEX).sum())


def _unpacked_batch(examples) -> dict[str, torch.Tensor]:
    """The seed's batch: right-padded to the longest, labels -100 and attention mask 0 on padding."""
    longest = max(len(e["input_ids"]) for e in examples)
    ids = torch.zeros(len(examples), longest, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX)
    mask = torch.zeros(len(examples), longest, dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[r, :n] = torch.tensor(e["input_ids"])
        labels[r, :n] = torch.tensor(e["labels"])
        mask[r, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attn", ["sdpa", VARLEN_ATTENTION])
def test_packed_loss_and_gradients_equal_unpacked(tiny_llama_path, attn: str) -> None:
    # Last example is fully supervised: its first token must not become a cross-example target.
    lengths = [(6, 9), (2, 3), (10, 4), (5, 12), (0, 7)]
    unpacked_model = _load(tiny_llama_path, "sdpa")
    examples = _examples(unpacked_model.config.vocab_size, lengths, seed=2)

    loss_sum, count = _supervised_loss_sum(unpacked_model, _unpacked_batch(examples))
    assert count == sum(r for _, r in lengths) - 1  # the fully supervised example's first token has no context
    (loss_sum / count).backward()
    expected_loss, expected_grads = (loss_sum / count).item(), _grads(unpacked_model)

    # Packed, in two micro-batches (gradient accumulation): each micro-batch's loss sum is
    # divided by the supervised count of the whole batch, so the sum is the same mean.
    model = _load(tiny_llama_path, attn)
    prepare_model_for_packing(model)
    bins = pack_bins([len(e["input_ids"]) for e in examples], 30)
    assert len(bins) == 2
    micro = [collate_packed([examples[i] for i in b], varlen_kwargs=attn == VARLEN_ATTENTION) for b in bins]
    global_count = sum(int((m["labels"][:, 1:] != IGNORE_INDEX).sum()) for m in micro)
    assert global_count == count
    total = 0.0
    for m in micro:
        part_sum, _ = _supervised_loss_sum(model, m)
        (part_sum / global_count).backward()
        total += (part_sum / global_count).item()

    assert total == pytest.approx(expected_loss, abs=1e-5)
    grads = _grads(model)
    assert grads.keys() == expected_grads.keys()
    for name, g in grads.items():
        torch.testing.assert_close(g, expected_grads[name], atol=1e-5, rtol=0, msg=name)


@pytest.mark.gpu
def test_varlen_kernel_keeps_examples_apart_on_cuda(tiny_llama_path) -> None:
    """torch's flash varlen kernel under bf16 autocast: isolation exact, logits as run alone."""
    import importlib.util

    if importlib.util.find_spec("torch.nn.attention.varlen") is None:
        pytest.skip("torch.nn.attention.varlen needs torch >= 2.10")
    model = _load(tiny_llama_path, VARLEN_ATTENTION).cuda()
    prepare_model_for_packing(model)
    examples = _examples(model.config.vocab_size, [(4, 5), (3, 6), (2, 2)], seed=1)

    def logits(row: dict) -> torch.Tensor:
        row = {k: v.cuda() if torch.is_tensor(v) else v for k, v in row.items() if k != "labels"}
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(**row).logits[0].float().cpu()

    row = collate_packed(examples, varlen_kwargs=True)
    changed = dict(row, input_ids=row["input_ids"].clone())
    changed["input_ids"][0, :9] = (changed["input_ids"][0, :9] + 7) % model.config.vocab_size
    one_sequence = dict(changed, cu_seq_lens_q=torch.tensor([0, 22], dtype=torch.int32),
                        cu_seq_lens_k=torch.tensor([0, 22], dtype=torch.int32), max_length_q=22, max_length_k=22)
    base = logits(row)
    assert (logits(changed)[9:] - base[9:]).abs().max().item() == 0.0
    assert (logits(one_sequence)[9:] - base[9:]).abs().max().item() > 1e-2  # teeth
    start = 0
    for ex in examples:
        alone = logits(collate_packed([ex], varlen_kwargs=True))
        torch.testing.assert_close(base[start : start + len(alone)], alone, atol=2e-2, rtol=2e-2)
        start += len(alone)
