import torch

from vqvid.training.data import ResumableLoader, StepBatchSampler, hold_out


def _epoch(sampler):
    return [batch for batch in sampler]


def test_ranks_get_disjoint_shards_of_equal_length():
    ranks = [StepBatchSampler(50, 4, seed=3, rank=r, world_size=3) for r in range(3)]
    batches = [_epoch(s) for s in ranks]
    assert all(len(b) == len(ranks[0]) == 50 // 12 for b in batches)
    seen = [i for b in batches for batch in b for i in batch]
    assert len(seen) == len(set(seen)) == 4 * 3 * 4


def test_epochs_are_reshuffled_and_repeatable():
    a, b = StepBatchSampler(40, 4, seed=1), StepBatchSampler(40, 4, seed=1)
    first = _epoch(a)
    a.set_epoch(1)
    second = _epoch(a)
    assert first == _epoch(b) and first != second


def test_loader_starts_where_the_trainer_stands():
    straight = StepBatchSampler(40, 4, seed=7)
    reference = [_epoch(straight) for _ in range(3)]  # three epochs of 10 batches
    for epoch in range(3):
        straight.set_epoch(epoch)
        reference[epoch] = _epoch(straight)
    assert reference[0] != reference[1]

    step = {"value": 6}  # resumed after 6 batches of epoch 0
    loader = ResumableLoader(torch.arange(40), StepBatchSampler(40, 4, seed=7), lambda: step["value"])
    assert loader.state_dict() == {"epoch": 0, "batch": 6}
    rest = [batch.tolist() for batch in loader]
    step["value"] = 10
    rest += [batch.tolist() for batch in loader]
    assert rest == reference[0][6:] + reference[1]


def test_hold_out_keeps_the_tail():
    train, val = hold_out(list(range(20)), 0.1)
    assert [train[i] for i in range(len(train))] == list(range(18))
    assert [val[i] for i in range(len(val))] == [18, 19]
