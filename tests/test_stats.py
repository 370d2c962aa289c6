"""suite.stats (bootstrap intervals) and the sweep's step-counted loop on cases with known answers."""
import numpy as np
import torch

from suite import stats
from suite.dataset import SplitTensors
from suite.masks import random_elements
from suite.model import ClosureCNN
from suite.transfer.steps import train_steps


def test_constant_values_have_a_zero_width_interval():
    assert stats.bootstrap(np.full((3, 10), 0.5)) == (0.5, 0.5, 0.5)


def test_snapshot_interval_matches_the_normal_theory():
    # one seed, 400 iid snapshots of sd 0.1: the 95 % interval is mean +- 1.96 * 0.1 / 20
    x = np.random.default_rng(1).normal(0.5, 0.1, 400)
    est, lo, hi = stats.bootstrap(x, n_boot=4000)
    half = 1.96 * x.std() / np.sqrt(len(x))
    assert abs(est - x.mean()) < 1e-12
    assert abs((hi - lo) / 2 - half) < 0.15 * half and lo < est < hi


def test_seed_level_resampling():
    # two seeds, constant over snapshots (0 and 1): replicate means are 0, 0.5, 1 with p = 1/4, 1/2, 1/4
    est, lo, hi = stats.bootstrap(np.array([[0.0] * 5, [1.0] * 5]), n_boot=4000)
    assert (est, lo, hi) == (0.5, 0.0, 1.0)


def test_paired_difference_and_significance():
    a = np.random.default_rng(2).uniform(0.3, 0.9, (3, 20))
    d = stats.paired(a, a - 0.1)  # the pairing removes the spread of a
    assert np.allclose(d, 0.1) and stats.significant(d)
    assert not stats.significant(stats.paired(a, a))
    noisy = stats.paired(a, a[::-1])  # the same values, other seeds: no difference on average
    assert noisy[1] < 0 < noisy[2] and not stats.significant(noisy)


def test_random_elements_count_and_seed():
    a = random_elements([10, 20, 30], 17, seed=3)
    assert [len(x) for x in a] == [10, 20, 30] and sum(int(x.sum()) for x in a) == 17
    assert all((x == y).all() for x, y in zip(a, random_elements([10, 20, 30], 17, seed=3)))


def _data(n=6, size=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, size, size, generator=g)
    y = x[:, :1] * 0.5 + 0.1 * torch.randn(n, 1, size, size, generator=g)
    return SplitTensors(x, y, {}, np.zeros((n, 2), int), 1.0, 0.1)


def test_steps_are_counted_and_grad_masks_freeze_elements():
    torch.manual_seed(0)
    net = ClosureCNN(layers=2, width=3, kernel=3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = list(net.named_parameters())
    chosen = random_elements([p.numel() for _, p in params], 7, seed=0)
    masks = {n: torch.from_numpy(c.reshape(p.shape)).float() for (n, p), c in zip(params, chosen)}
    res = train_steps(net, _data(), steps=10, batch=4, lr=1e-2, eval_every=5, grad_masks=masks)
    assert res.steps == 10 and res.best_step == 10 and res.history["step"] == [5, 10]
    moved = sum(int((net.state_dict()[n] != before[n]).sum()) for n, _ in params)
    assert moved == 7  # exactly the chosen elements changed (Adam moves no element with zero gradient)
    for n, _ in params:
        assert torch.equal(net.state_dict()[n][masks[n] == 0], before[n][masks[n] == 0])


def test_early_stopping_keeps_the_best_weights():
    torch.manual_seed(0)
    net = ClosureCNN(layers=2, width=3, kernel=3)
    data = _data()
    losses = iter([1.0, 0.5, 0.7, 0.8, 0.9, 1.0])  # best after the first check; stop after 2 worse ones

    states = []

    def val_loss():
        states.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(losses)

    res = train_steps(net, data, steps=100, batch=4, lr=1e-2, val_loss=val_loss, eval_every=3, patience=2)
    assert (res.steps, res.best_step, res.best_val) == (9, 3, 0.5)
    assert all(torch.equal(net.state_dict()[k], states[1][k]) for k in states[1])
