"""DPO and SELM against values and gradients computed by hand (see the arithmetic in each docstring)."""

import math

import pytest
import torch

from selm.algorithms.losses import LOSSES, Logps, dpo_loss, implicit_reward, ipo_loss, selm_loss


def _leaf(*xs):
    return [torch.tensor([x], dtype=torch.float64, requires_grad=True) for x in xs]


def test_dpo_value_and_gradients_by_hand():
    """pc=-1, pr=-2, rc=-1.5, rr=-1.5, β=0.5.

    z = (-1 + 1.5) - (-2 + 1.5) = 1;  β z = 0.5;  L = log(1 + e^-0.5) = log(1.6065306597) = 0.4740769842
    dL/dpc = -β σ(-β z) = -0.5 · 0.3775406688 = -0.1887703344;  dL/dpr = +0.1887703344
    dL/drc = +0.1887703344;  dL/drr = -0.1887703344
    """
    pc, pr, rc, rr = _leaf(-1.0, -2.0, -1.5, -1.5)
    loss, rw, rl = dpo_loss(Logps(pc, pr), Logps(rc, rr), beta=0.5)
    assert (rw.item(), rl.item()) == (0.25, -0.25)  # β(pc − rc), β(pr − rr)
    loss.sum().backward()
    assert loss.item() == pytest.approx(0.4740769842, abs=1e-9)
    assert pc.grad.item() == pytest.approx(-0.1887703344, abs=1e-9)
    assert pr.grad.item() == pytest.approx(0.1887703344, abs=1e-9)
    assert rc.grad.item() == pytest.approx(0.1887703344, abs=1e-9)
    assert rr.grad.item() == pytest.approx(-0.1887703344, abs=1e-9)


def test_selm_adds_alpha_beta_optimism_on_greedy_reply():
    """Same pair, plus y0 with log πθ(y0) = -3, log πref(y0) = -2.5, α = 0.1, β = 0.5.

    optimism = α β (pg - rg) = 0.1 · 0.5 · (-0.5) = -0.025 → L = 0.4740769842 - 0.025 = 0.4490769842
    dL/dpg = α β = 0.05; dL/drg = -0.05; the pair gradients are those of DPO.
    """
    pc, pr, rc, rr, pg, rg = _leaf(-1.0, -2.0, -1.5, -1.5, -3.0, -2.5)
    loss, _, _ = selm_loss(Logps(pc, pr, pg), Logps(rc, rr, rg), beta=0.5, alpha=0.1)
    loss.sum().backward()
    assert loss.item() == pytest.approx(0.4490769842, abs=1e-9)
    assert pg.grad.item() == pytest.approx(0.05, abs=1e-12)
    assert rg.grad.item() == pytest.approx(-0.05, abs=1e-12)
    assert pc.grad.item() == pytest.approx(-0.1887703344, abs=1e-9)


def test_selm_with_alpha_zero_is_dpo_on_a_batch():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr, pg, rg = (torch.randn(7, generator=g, dtype=torch.float64) * 5 for _ in range(6))
    torch.testing.assert_close(
        selm_loss(Logps(pc, pr, pg), Logps(rc, rr, rg), 0.1, 0.0), dpo_loss(Logps(pc, pr), Logps(rc, rr), 0.1)
    )


def test_batch_values_match_scalar_formula():
    """Each element is -log σ(β z) written out with math.exp, independently of torch."""
    pc, pr, rc, rr = (
        torch.tensor(v, dtype=torch.float64)
        for v in ([-3.0, -10.0, 0.0], [-4.0, -2.0, -1.0], [-3.5, -9.0, -0.5], [-3.5, -2.5, -0.2])
    )
    beta = 0.2
    expected = []
    for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist()):
        z = (a - c) - (b - d)
        expected.append(math.log(1 + math.exp(-beta * z)))
    torch.testing.assert_close(
        dpo_loss(Logps(pc, pr), Logps(rc, rr), beta)[0], torch.tensor(expected, dtype=torch.float64)
    )


def test_implicit_reward():
    assert implicit_reward(torch.tensor(-2.0), torch.tensor(-3.0), 0.1).item() == pytest.approx(0.1)


def test_ipo_value_and_gradients_by_hand():
    """pc=-1, pr=-2, rc=-1.5, rr=-1.5, β=0.5: h = 1, 1/(2β) = 1 → L = 0 and every gradient 0; with β = 0.25,
    1/(2β) = 2 → L = (1 − 2)² = 1, dL/dpc = 2(h − 2) = −2, dL/dpr = +2."""
    pc, pr, rc, rr = _leaf(-1.0, -2.0, -1.5, -1.5)
    assert ipo_loss(Logps(pc, pr), Logps(rc, rr), beta=0.5)[0].item() == pytest.approx(0.0, abs=1e-12)
    loss, rw, rl = ipo_loss(Logps(pc, pr), Logps(rc, rr), beta=0.25)
    loss.sum().backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-12) and (rw.item(), rl.item()) == (0.125, -0.125)
    assert pc.grad.item() == pytest.approx(-2.0) and pr.grad.item() == pytest.approx(2.0)


def test_the_registry_names_every_loss_a_recipe_may_choose():
    """``LOSS_SPECS`` (config) and ``LOSSES`` (the functions) list the same losses; each function takes exactly its
    spec's hyperparameters after the log-probs; a recipe naming another loss fails with the list."""
    import inspect

    from selm.config import LOSS_SPECS, RecipeError, Train, load_recipe

    assert set(LOSSES) == set(LOSS_SPECS)
    for name, fn in LOSSES.items():
        assert tuple(inspect.signature(fn).parameters)[2:] == LOSS_SPECS[name].hyperparameters, name
        assert set(Train(loss=name).loss_hyperparameters()) == set(LOSS_SPECS[name].hyperparameters)
    with pytest.raises(RecipeError, match="no such loss 'kto'; one of dpo, ipo, selm"):
        load_recipe(None, ["train.loss=kto"])
