"""Every loss against values worked out by hand with ``math``, not with the code under test."""

import math

import pytest
import torch

from skincls.core.imbalance import class_balanced_weights
from skincls.model.losses import create_loss

LOGITS = [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 3.0, 0.2]]
TARGET = [0, 2, 1]
COUNTS = [10, 1, 5]


def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def cb_weights_by_hand(counts, beta):
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def run(name, **kw):
    loss = create_loss(name, COUNTS, **kw)
    return loss(torch.tensor(LOGITS), torch.tensor(TARGET)).item()


def test_cross_entropy_and_label_smoothing():
    nll = [-log_softmax(r)[t] for r, t in zip(LOGITS, TARGET, strict=False)]
    assert run("ce") == pytest.approx(sum(nll) / 3, rel=1e-6)
    eps = 0.1
    smooth = [
        (1 - eps) * -log_softmax(r)[t] + eps * sum(-v for v in log_softmax(r)) / 3
        for r, t in zip(LOGITS, TARGET, strict=False)
    ]
    assert run("ce", label_smoothing=eps) == pytest.approx(sum(smooth) / 3, rel=1e-6)


def test_softmax_focal():
    g = 2.0
    vals = []
    for r, t in zip(LOGITS, TARGET, strict=False):
        lp = log_softmax(r)[t]
        vals.append(-((1 - math.exp(lp)) ** g) * lp)
    assert run("focal", gamma=g) == pytest.approx(sum(vals) / 3, rel=1e-6)


def test_cb_weights_are_inverse_effective_numbers_summing_to_c():
    w = class_balanced_weights(COUNTS, 0.9)
    assert w == pytest.approx(cb_weights_by_hand(COUNTS, 0.9))
    assert sum(w) == pytest.approx(3.0)
    assert (
        w[1] > w[2] > w[0]
    )  # the rarest class weighs most (not E itself, which favours the majority)


def test_cb_softmax():
    w = cb_weights_by_hand(COUNTS, 0.9)
    vals = [w[t] * -log_softmax(r)[t] for r, t in zip(LOGITS, TARGET, strict=False)]
    assert run("cb_softmax", beta=0.9) == pytest.approx(sum(vals) / 3, rel=1e-6)


def cb_sigmoid_focal_by_hand(beta, gamma):
    w = cb_weights_by_hand(COUNTS, beta)
    total = 0.0
    for r, t in zip(LOGITS, TARGET, strict=False):
        for j, z in enumerate(r):
            y = 1.0 if j == t else 0.0
            p = sigmoid(z)
            bce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
            p_t = p if y else 1 - p
            total += w[t] * (1 - p_t) ** gamma * bce
    return total / 3


def test_cb_sigmoid_and_focal_match_the_official_formula():
    assert run("cb_sigmoid", beta=0.99) == pytest.approx(
        cb_sigmoid_focal_by_hand(0.99, 0.0), rel=1e-6
    )
    assert run("cb_focal", beta=0.99, gamma=2.0) == pytest.approx(
        cb_sigmoid_focal_by_hand(0.99, 2.0), rel=1e-5
    )
    # the official modulator exp(-g*y*z - g*log(1+exp(-z))) is (1 - p_t)^g
    g, z = 1.5, 0.7
    for y in (0.0, 1.0):
        official = math.exp(-g * y * z - g * math.log1p(math.exp(-z)))
        p_t = sigmoid(z) if y else 1 - sigmoid(z)
        assert official == pytest.approx((1 - p_t) ** g)


def test_logit_adjusted_and_balanced_softmax():
    prior = [n / sum(COUNTS) for n in COUNTS]
    for tau in (1.0, 0.5):
        vals = []
        for r, t in zip(LOGITS, TARGET, strict=False):
            adj = [v + tau * math.log(p) for v, p in zip(r, prior, strict=False)]
            vals.append(-log_softmax(adj)[t])
        assert run("logit_adjust", tau=tau) == pytest.approx(sum(vals) / 3, rel=1e-6)
    assert run("balanced_softmax") == pytest.approx(run("logit_adjust", tau=1.0))


def test_beta_zero_is_plain_and_beta_one_is_inverse_frequency():
    assert run("cb_softmax", beta=0.0) == pytest.approx(run("ce"))
    w = class_balanced_weights([100, 10], 0.99999999)
    assert w[1] / w[0] == pytest.approx(10.0, rel=1e-4)


@pytest.mark.parametrize(
    "name",
    ["ce", "focal", "cb_softmax", "cb_sigmoid", "cb_focal", "logit_adjust", "balanced_softmax"],
)
def test_safe_on_empty_classes_large_logits_and_half_precision(name):
    loss = create_loss(name, [0, 7, 3], beta=0.999, gamma=2.0)
    logits = torch.tensor(
        [[-1e4, 300.0, -300.0], [50.0, -1e4, 0.0]], dtype=torch.float16, requires_grad=True
    )
    target = torch.tensor([1, 2])
    value = loss(logits, target)
    value.backward()
    assert value.dtype == torch.float32
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_weights_are_buffers_that_follow_the_module():
    loss = create_loss("cb_focal", COUNTS, beta=0.9)
    assert "weight" in dict(loss.named_buffers())
    assert loss.state_dict()["weight"].tolist() == pytest.approx(cb_weights_by_hand(COUNTS, 0.9))
