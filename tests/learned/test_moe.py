"""Mixture of experts: the auxiliary losses against closed forms, gating, the prediction against
its definition, training that recovers an identifiable regime (and fails without the signal),
the epsilon-net bound's formula."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from assimilax.learned import moe
from assimilax.metrics import normalized_mutual_information


def test_load_balancing_and_z_loss_closed_forms():
    k = 4
    uniform = jnp.full((10, k), 1.0 / k)
    assert float(moe.load_balancing_loss(uniform)) == pytest.approx(1.0)
    collapsed = jax.nn.one_hot(jnp.zeros(10, jnp.int32), k)
    assert float(moe.load_balancing_loss(collapsed)) == pytest.approx(k)
    probs = jnp.array([[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0]])
    # f = (1/2, 1/2, 0, 0), P = (0.4, 0.4, 0.2, 0): 4 * (0.2 + 0.2) = 1.6
    assert float(moe.load_balancing_loss(probs)) == pytest.approx(1.6)
    logits = jnp.array([[1.0, 2.0, -1.0], [0.5, 0.0, 3.0]])
    ref = np.mean(np.log(np.exp(np.asarray(logits)).sum(1)) ** 2)
    assert float(moe.router_z_loss(logits)) == pytest.approx(ref, rel=1e-12)


def _model(k=3, top_k=1, router="gate", key=0):
    return moe.MixtureOfExperts(4, 2, k, width=8, depth=1, top_k=top_k, router=router, loc=0.5, scale=2.0,
                                step_scale=0.3, key=jax.random.key(key))


@pytest.mark.parametrize("router", ["gate", "attention"])
def test_gates_and_prediction_definition(router):
    w = jax.random.normal(jax.random.key(1), (4, 2))
    m1 = _model(top_k=1, router=router)
    r = m1.route(w)
    np.testing.assert_allclose(float(jnp.sum(r.probs)), 1.0, atol=1e-12)
    i = int(jnp.argmax(r.probs))
    np.testing.assert_allclose(np.asarray(r.gates), np.asarray(r.probs[i] * jax.nn.one_hot(i, 3)), atol=1e-12)
    m2 = _model(top_k=2, router=router)
    g2 = np.asarray(m2.route(w).gates)
    assert np.sum(g2 > 0) == 2 and g2.sum() == pytest.approx(1.0)
    # prediction = y_t + sum_i g_i * E_i(features) * step_scale, expert i taken out of the stack
    feats = jnp.concatenate([((w - 0.5) / 2.0).reshape(-1), (jnp.diff(w, axis=0) / 0.3).reshape(-1)])
    e1 = jax.tree_util.tree_map(lambda x: x[1] if eqx.is_array(x) else x, m2.experts)
    gates = jnp.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(np.asarray(m2.combine(w, gates)), np.asarray(w[-1] + 0.3 * e1(feats)), atol=1e-10)
    pred, _ = m2(w)
    np.testing.assert_allclose(np.asarray(pred), np.asarray(m2.combine(w, m2.route(w).gates)), atol=1e-12)


def test_rollout_feeds_predictions_back():
    m = _model()
    w = jax.random.normal(jax.random.key(2), (4, 2))
    out = moe.rollout(m, w, 3)
    win = w
    for j in range(3):
        y = m(win)[0]
        np.testing.assert_allclose(np.asarray(out[j]), np.asarray(y), atol=1e-10)
        win = jnp.concatenate([win[1:], y[None]])
    lab = jnp.array([2, 0, 1])
    out_o = moe.rollout(m, w, 3, labels=lab)
    np.testing.assert_allclose(np.asarray(out_o[0]), np.asarray(m.combine(w, jax.nn.one_hot(2, 3))), atol=1e-10)


def test_parameter_count_and_equal_width():
    m = _model(k=3)
    f, h, out = 14, 8, 2
    experts = 3 * (f * h + h + h * out + out)
    router = f * 16 + 16 + 16 * 3 + 3
    assert moe.count_parameters(m) == experts + router
    width = moe.equal_parameter_width(moe.count_parameters(m), 4, 2, depth=1)
    single = moe.MixtureOfExperts(4, 2, 1, width=width, depth=1, router_hidden=0, key=jax.random.key(0))
    per_unit = f + 1 + out
    assert abs(moe.count_parameters(single) - moe.count_parameters(m)) <= per_unit


def _regime_data(key, t=300, switch_every=30):
    # y_{t+1} = y_t + a_k + noise, a_k far apart: the regime is read off one increment
    a = jnp.array([[1.0, 0.0], [-1.0, 0.5], [0.0, -1.0]])
    lab = (jnp.arange(t) // switch_every) % 3
    steps = a[lab] + 0.05 * jax.random.normal(key, (t, 2))
    return jnp.cumsum(steps, axis=0), lab.astype(jnp.int32)


def test_alignment_training_recovers_the_regime():
    s = 2
    data = [_regime_data(jax.random.key(i)) for i in range(s)]
    obs = jnp.stack([d[0] for d in data])
    lab = jnp.stack([d[1] for d in data])
    models = eqx.filter_vmap(lambda k: moe.MixtureOfExperts(3, 2, 3, width=8, depth=1, scale=10.0, key=k))(
        jax.random.split(jax.random.key(3), s))
    wts = moe.MoELossWeights(alignment=jnp.array([1.0, 0.0]))  # model 0 aligned, model 1 not
    trained, losses = moe.fit_moe(models, obs, lab, wts, key=jax.random.key(4), n_steps=200, batch_size=8,
                                  segment=4, learning_rate=1e-2, progress=False)
    assert losses[-1] < losses[0]
    m0 = jax.tree_util.tree_map(lambda x: x[0] if eqx.is_array(x) else x, trained)
    test_obs, test_lab = _regime_data(jax.random.key(9))
    win, tar, lb = moe.window_arrays(test_obs, test_lab, 3)
    r = moe.routes(m0, win)
    # the regime changes the increment by ~1, the noise is 0.05: the aligned router gets it
    assert float(normalized_mutual_information(r, lb, 3, 3)) > 0.8
    assert float(jnp.mean(r == lb)) > 0.9
    rmse = float(jnp.sqrt(jnp.mean((moe.predict(m0, win) - tar) ** 2)))
    assert rmse < 0.3


def test_oracle_training_uses_the_labels():
    obs, lab = _regime_data(jax.random.key(0))
    m = eqx.filter_vmap(lambda k: moe.MixtureOfExperts(3, 2, 3, width=8, depth=1, scale=10.0, key=k))(
        jax.random.split(jax.random.key(5), 2))
    # the same data with correct labels and with shuffled labels: only the first can be fitted
    bad = jax.random.permutation(jax.random.key(1), lab)
    trained, _ = moe.fit_moe(m, jnp.stack([obs, obs]), jnp.stack([lab, bad]), moe.MoELossWeights(),
                             key=jax.random.key(6), n_steps=150, batch_size=8, segment=4, learning_rate=1e-2,
                             oracle=True, progress=False)
    win, tar, lb = moe.window_arrays(obs, lab, 3)
    errs = []
    for i, labels in enumerate((lab, bad)):
        mi = jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, trained)
        errs.append(float(jnp.sqrt(jnp.mean((moe.predict(mi, win, labels[3:]) - tar) ** 2))))
    assert errs[0] < 0.5 * errs[1]


def test_observation_regimes_and_windows():
    reg = jnp.arange(20, dtype=jnp.int32)
    np.testing.assert_array_equal(np.asarray(moe.observation_regimes(reg, 5)), [4, 9, 14, 19])
    y = jnp.arange(12.0).reshape(6, 2)
    w, t, l = moe.window_arrays(y, jnp.arange(6), 2)
    assert w.shape == (4, 2, 2)
    np.testing.assert_array_equal(np.asarray(w[1]), np.asarray(y[1:3]))
    np.testing.assert_array_equal(np.asarray(t[1]), np.asarray(y[3]))
    assert int(l[1]) == 3


def test_epsilon_net_bound_and_slope():
    n = np.array([100.0, 400.0])
    b = moe.epsilon_net_bound(n, 10, 2.0, delta=0.1, lipschitz=3.0, radius=5.0)
    ref = 2 * 2.0 * np.sqrt((10 * np.log(3 * n) + np.log(20)) / (2 * n)) + 4 * 3.0 * 5.0 / n
    np.testing.assert_allclose(b, ref, rtol=1e-12)
    ns = np.array([10.0, 100.0, 1000.0])
    assert moe.loglog_slope(ns, 3 * ns ** -0.5) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        moe.epsilon_net_bound(n, 0, 1.0)


def test_errors():
    with pytest.raises(ValueError, match="top_k"):
        _model(k=2, top_k=3)
    with pytest.raises(ValueError, match="router"):
        _model(router="mlp")
    m = _model()
    with pytest.raises(ValueError, match="leading axis"):
        moe.fit_moe(m, jnp.zeros((2, 50, 2)), jnp.zeros((2, 50), jnp.int32), moe.MoELossWeights(), key=jax.random.key(0))


def test_prediction_scores_indexing():
    obs, lab = _regime_data(jax.random.key(0), t=60)
    states = obs - 0.01  # a "truth" distinct from the observations
    m = moe.MixtureOfExperts(3, 2, 3, width=4, depth=1, scale=10.0, key=jax.random.key(1))
    sc = moe.prediction_scores(m, obs, states, lab, horizon=4, stride=5)
    win, _, lb = moe.window_arrays(obs, lab, 3)
    one = np.sqrt(np.mean((np.asarray(moe.predict(m, win)) - np.asarray(states[3:])) ** 2))
    assert float(sc.one_step_rmse) == pytest.approx(one, rel=1e-10)
    starts = np.arange(0, win.shape[0] - 4, 5)
    last = np.stack([np.asarray(moe.rollout(m, win[s], 4)[-1]) for s in starts])
    hor = np.sqrt(np.mean((last - np.asarray(states)[starts + 3 + 4 - 1]) ** 2))
    assert float(sc.horizon_rmse) == pytest.approx(hor, rel=1e-10)
    so = moe.prediction_scores(m, obs, states, lab, horizon=4, oracle=True)
    one_o = np.sqrt(np.mean((np.asarray(moe.predict(m, win, lb)) - np.asarray(states[3:])) ** 2))
    assert float(so.one_step_rmse) == pytest.approx(one_o, rel=1e-10)


def test_moe_loss_terms_against_their_definitions():
    m = _model()
    win = jax.random.normal(jax.random.key(7), (2, 3, 4, 2))
    tar = jax.random.normal(jax.random.key(8), (2, 3, 2))
    lab = jnp.array([[0, 1, 2], [2, 2, 1]])
    wts = moe.MoELossWeights(0.1, 0.2, 0.3, 0.4)
    total, t = moe.moe_loss(m, win, tar, lab, wts)
    r = jax.vmap(jax.vmap(m.route))(win)
    p = np.asarray(r.probs)
    cons = 0.5 * np.mean(np.sum((p[:, 1:] - p[:, :-1]) ** 2, axis=-1))
    align = -np.mean(np.log(np.take_along_axis(p, np.asarray(lab)[..., None], axis=-1)))
    pred = np.asarray(jax.vmap(jax.vmap(lambda w: m(w)[0]))(win))
    err = np.mean(((pred - np.asarray(tar)) / 0.3) ** 2)
    assert float(t.consistency) == pytest.approx(cons, rel=1e-9)
    assert float(t.alignment) == pytest.approx(align, rel=1e-9)
    assert float(t.prediction) == pytest.approx(err, rel=1e-9)
    ref = err + 0.1 * float(t.balance) + 0.2 * float(t.z_loss) + 0.3 * align + 0.4 * cons
    assert float(total) == pytest.approx(ref, rel=1e-9)
    # the oracle's gates are the one-hot labels
    _, to = moe.moe_loss(m, win, tar, lab, wts, oracle=True)
    po = np.asarray(jax.vmap(jax.vmap(lambda w, k: m.combine(w, jax.nn.one_hot(k, 3))))(win, lab))
    assert float(to.prediction) == pytest.approx(np.mean(((po - np.asarray(tar)) / 0.3) ** 2), rel=1e-9)


def _np_entropy(p):
    p = np.asarray(p, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=-1)


def test_routing_information_against_its_definition():
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(11), (40, 3)) * 2.0)
    p = np.asarray(probs)
    ref = _np_entropy(p.mean(axis=0)) - np.mean(_np_entropy(p))
    assert float(moe.routing_information(probs)) == pytest.approx(ref, rel=1e-12)
    # in the loss: the information term is -I over all B L windows, weighted by lambda_i
    m = _model()
    win = jax.random.normal(jax.random.key(12), (2, 3, 4, 2))
    tar = jax.random.normal(jax.random.key(13), (2, 3, 2))
    lab = jnp.array([[0, 1, 2], [2, 2, 1]])
    total0, t0 = moe.moe_loss(m, win, tar, lab, moe.MoELossWeights(0.1, 0.2, 0.3, 0.4))
    total, t = moe.moe_loss(m, win, tar, lab, moe.MoELossWeights(0.1, 0.2, 0.3, 0.4, 0.7))
    pr = np.asarray(jax.vmap(jax.vmap(m.route))(win).probs).reshape(-1, 3)
    info = _np_entropy(pr.mean(axis=0)) - np.mean(_np_entropy(pr))
    assert float(t.information) == pytest.approx(-info, rel=1e-9)
    assert float(total) == pytest.approx(float(total0) - 0.7 * info, rel=1e-9)
    assert float(t0.information) == pytest.approx(float(t.information), rel=1e-12)  # weight 0 only switches it off


def test_routing_information_is_maximised_by_confident_balanced_routes():
    k, n = 4, 12
    balanced = jax.nn.one_hot(jnp.arange(n) % k, k)
    assert float(moe.routing_information(balanced)) == pytest.approx(np.log(k), rel=1e-12)
    collapsed = jax.nn.one_hot(jnp.zeros(n, jnp.int32), k)       # confident, not balanced
    uniform = jnp.full((n, k), 1.0 / k)                            # balanced, not confident
    assert float(moe.routing_information(collapsed)) == pytest.approx(0.0, abs=1e-12)
    assert float(moe.routing_information(uniform)) == pytest.approx(0.0, abs=1e-12)
    # random route distributions: never above log K, and below the confident balanced routes
    rng = np.random.default_rng(0)
    for _ in range(50):
        p = jax.nn.softmax(jnp.asarray(rng.normal(size=(n, k)) * rng.uniform(0.1, 5.0)))
        i = float(moe.routing_information(p))
        assert -1e-12 <= i < np.log(k) - 1e-6
    # gradient ascent on I from random logits approaches log K
    logits = jnp.asarray(rng.normal(size=(n, k)))
    g = jax.grad(lambda z: moe.routing_information(jax.nn.softmax(z)))
    for _ in range(500):
        logits = logits + 1.0 * g(logits)
    assert float(moe.routing_information(jax.nn.softmax(logits))) > 0.95 * np.log(k)


def test_regime_input_network():
    m = moe.MixtureOfExperts(4, 2, 3, width=8, depth=1, router_hidden=0, loc=0.5, scale=2.0, step_scale=0.3,
                             regime_input=True, key=jax.random.key(0))
    f, h, out = 14, 8, 2
    assert moe.count_parameters(m.experts) == (f + 3) * h + h + h * out + out  # one network, K extra inputs
    w = jax.random.normal(jax.random.key(1), (4, 2))
    net = jax.tree_util.tree_map(lambda x: x[0] if eqx.is_array(x) else x, m.experts)
    g = jax.nn.one_hot(1, 3)
    ref = w[-1] + 0.3 * net(jnp.concatenate([m.features(w), g]))
    np.testing.assert_allclose(np.asarray(m.combine(w, g)), np.asarray(ref), atol=1e-12)
    np.testing.assert_allclose(np.asarray(m.expert_outputs(w)[1]), np.asarray(ref - w[-1]), atol=1e-12)
    np.testing.assert_allclose(np.asarray(moe.predict(m, w[None], jnp.array([1]))[0]), np.asarray(ref), atol=1e-12)
    # trained as an oracle on the regime data, the labelled network beats shuffled labels
    obs, lab = _regime_data(jax.random.key(0))
    ms = eqx.filter_vmap(lambda k: moe.MixtureOfExperts(3, 2, 3, width=8, depth=1, scale=10.0, regime_input=True,
                                                        key=k))(jax.random.split(jax.random.key(5), 2))
    bad = jax.random.permutation(jax.random.key(1), lab)
    trained, _ = moe.fit_moe(ms, jnp.stack([obs, obs]), jnp.stack([lab, bad]), moe.MoELossWeights(),
                             key=jax.random.key(6), n_steps=150, batch_size=8, segment=4, learning_rate=1e-2,
                             oracle=True, progress=False)
    win, tar, _ = moe.window_arrays(obs, lab, 3)
    errs = []
    for i, labels in enumerate((lab, bad)):
        mi = jax.tree_util.tree_map(lambda x: x[i] if eqx.is_array(x) else x, trained)
        errs.append(float(jnp.sqrt(jnp.mean((moe.predict(mi, win, labels[3:]) - tar) ** 2))))
    assert errs[0] < 0.5 * errs[1]


def test_per_model_learning_rates_equal_scalar_runs():
    """A (S,) learning rate trains model s exactly as the scalar rate eta_s would (same keys)."""
    obs, lab = _regime_data(jax.random.key(0))
    obs, lab = jnp.stack([obs, obs]), jnp.stack([lab, lab])
    m = eqx.filter_vmap(lambda k: moe.MixtureOfExperts(3, 2, 3, width=8, depth=1, scale=10.0, key=k))(
        jax.random.split(jax.random.key(5), 2))
    kw = dict(key=jax.random.key(6), n_steps=40, batch_size=4, segment=4, progress=False)
    both, _ = moe.fit_moe(m, obs, lab, moe.MoELossWeights(alignment=0.1), learning_rate=jnp.array([1e-3, 3e-2]), **kw)
    for i, eta in enumerate((1e-3, 3e-2)):
        alone, _ = moe.fit_moe(m, obs, lab, moe.MoELossWeights(alignment=0.1), learning_rate=eta, **kw)
        for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(both, eqx.is_array)),
                        jax.tree_util.tree_leaves(eqx.filter(alone, eqx.is_array))):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b[i]), rtol=1e-6, atol=1e-7)
    # the two rates give different models (the argument is used)
    leaf = jax.tree_util.tree_leaves(eqx.filter(both, eqx.is_array))[0]
    assert not np.allclose(np.asarray(leaf[0]), np.asarray(leaf[1]))
    for bad in (jnp.array([1e-3, 1e-2, 1e-1]), -1e-3, jnp.array([1e-3, jnp.nan])):
        with pytest.raises(ValueError, match="learning_rate"):
            moe.fit_moe(m, obs, lab, moe.MoELossWeights(), learning_rate=bad, **kw)


def test_switching_data_is_the_switching_simulation():
    """switching_data = simulate_switching of the Palmer-forced model from its documented start,
    labels = observation_regimes; it vmaps over dwell times, and the mean dwell follows tau."""
    from assimilax.models import SwitchingLorenz63, dwell_lengths, simulate_switching
    from assimilax.observations import LinearObservation

    obs = LinearObservation.full(3, 0.1)
    key = jax.random.key(3)
    d = moe.switching_data(key, 2.0, 12.0, 40, observation=obs, n_regimes=3, steps_per_obs=5, burn_in=50)
    k_x0, k_sim = jax.random.split(key)
    x0 = jnp.array([1.0, 1.0, 25.0]) + 2.0 * jax.random.normal(k_x0, (3,))
    base = SwitchingLorenz63(SwitchingLorenz63.palmer_forcings(3, 12.0), dwell_time=2.0, dt=0.01)
    sim, _, reg = simulate_switching(base, obs, x0, 40, key=k_sim, steps_per_obs=5, burn_in=50)
    np.testing.assert_array_equal(np.asarray(d.states), np.asarray(sim.states))
    np.testing.assert_array_equal(np.asarray(d.observations), np.asarray(sim.observations))
    np.testing.assert_array_equal(np.asarray(d.labels), np.asarray(reg[4::5]))
    assert d.states.shape == (40, 3) and d.regimes.shape == (200,)
    taus = jnp.array([0.2, 2.0])
    vd = jax.jit(jax.vmap(lambda k, t: moe.switching_data(k, t, 12.0, 2000, observation=obs, n_regimes=3,
                                                          burn_in=10)))(jax.random.split(key, 2), taus)
    means = [np.mean(dwell_lengths(np.asarray(vd.regimes[i]))) * 0.01 for i in range(2)]
    assert means[0] < 0.5 < 1.0 < means[1]
    with pytest.raises(ValueError, match="n_obs"):
        moe.switching_data(key, 2.0, 12.0, 0, observation=obs, n_regimes=3)


def test_comparison_models_are_the_documented_architectures():
    k = jax.random.key(0)
    kw = dict(width=16, depth=2, router_hidden=16, loc=1.0, scale=2.0, step_scale=0.5, key=k)
    gate = moe.comparison_model("gate", 4, 3, 3, **kw)
    mlp = moe.comparison_model("mlp", 4, 3, 3, **kw)
    w = moe.equal_parameter_width(moe.count_parameters(gate), 4, 3, depth=2)
    assert mlp.n_experts == 1 and mlp.experts.layers[0].weight.shape[1] == w
    assert abs(moe.count_parameters(mlp) - moe.count_parameters(gate)) / moe.count_parameters(gate) < 0.02
    att = moe.comparison_model("attention", 4, 3, 3, **kw)
    assert isinstance(att.router, moe.AttentionRouter) and isinstance(gate.router, moe.GateRouter)
    wide = moe.comparison_model("wide", 4, 3, 3, **kw)
    assert wide.n_experts == 3 and wide.experts.layers[0].weight.shape[1] == w
    cond = moe.comparison_model("conditioned", 4, 3, 3, **kw)
    assert cond.regime_input and cond.experts.layers[0].weight.shape[1:] == (w, 7 * 3 + 3)
    # the same key and arguments give the chapter's direct construction
    ref = moe.MixtureOfExperts(4, 3, 3, width=w, depth=2, router_hidden=0, loc=1.0, scale=2.0, step_scale=0.5,
                               regime_input=True, key=k)
    for a, b in zip(jax.tree_util.tree_leaves(cond), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="kind"):
        moe.comparison_model("transformer", 4, 3, 3, **kw)
