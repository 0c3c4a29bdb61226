"""Optimizers, schedules, clipping: PyTorch parity, state_dict round trips, bad input."""

from __future__ import annotations

import io
import math
import tracemalloc

import numpy as np
import pytest

from glasscnn import optim
from glasscnn.nn.module import Parameter

RTOL = {np.float32: 1e-5, np.float64: 1e-10}
SHAPES = [(5, 4), (4,), (4, 3), (3,)]


def _data(dtype):
    """A fixed regression problem: X (8, 5), Y (8, 3), initial weights of a 5-4-3 tanh MLP."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 5)).astype(dtype)
    y = rng.standard_normal((8, 3)).astype(dtype)
    weights = [(rng.standard_normal(s) * 0.5).astype(dtype) for s in SHAPES]
    return x, y, weights


def _numpy_grads(w, x, y):
    """Gradients of mean((tanh(x W1 + b1) W2 + b2 − y)²) with respect to W1, b1, W2, b2."""
    w1, b1, w2, b2 = w
    h = np.tanh(x @ w1 + b1)  # (8, 4)
    out = h @ w2 + b2  # (8, 3)
    dout = 2 * (out - y) / out.size
    dz = (dout @ w2.T) * (1 - h * h)
    return [x.T @ dz, dz.sum(0), h.T @ dout, dout.sum(0)]


def _split(params, groups):
    """Plain list, or two param groups where the first overrides ``groups`` (a dict)."""
    if groups is None:
        return list(params)
    return [{"params": params[:2], **groups}, {"params": params[2:]}]


def _run_ours(name, kwargs, dtype, steps, groups=None):
    x, y, weights = _data(dtype)
    params = [Parameter(w.copy()) for w in weights]
    opt = getattr(optim, name)(_split(params, groups), **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        for p, g in zip(params, _numpy_grads([p.data for p in params], x, y), strict=True):
            p.accumulate(g)
        opt.step()
    return [p.data for p in params]


def _run_torch(torch, name, kwargs, dtype, steps, groups=None):
    x, y, weights = _data(dtype)
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    opt = getattr(torch.optim, name)(_split(params, groups), foreach=False, **kwargs)
    tx, ty = torch.tensor(x), torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        w1, b1, w2, b2 = params
        loss = ((torch.tanh(tx @ w1 + b1) @ w2 + b2 - ty) ** 2).mean()
        loss.backward()
        opt.step()
    return [p.detach().numpy() for p in params]


OPT_CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.2, "weight_decay": 1e-2}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-3}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.9), "amsgrad": True}),
    ("Adam", {"lr": 0.01, "betas": (0.3, 0.99), "eps": 1e-6}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.1, "betas": (0.8, 0.9), "amsgrad": True}),
    ("RMSprop", {"lr": 0.01}),
    ("RMSprop", {"lr": 0.01, "centered": True}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.9, "weight_decay": 1e-2}),
    ("RMSprop", {"lr": 0.005, "alpha": 0.4, "eps": 1e-2, "centered": True, "momentum": 0.5}),
]


def _assert_close(ours, theirs, rtol):
    """Equal to ``rtol`` relative to each tensor's largest value.

    Not element by element: PyTorch's CPU kernels fuse ``p + a·b`` into one FMA, NumPy rounds
    twice, so an element that an update brings near zero differs by an ulp of the operands,
    which is a large fraction of itself.
    """
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.max(np.abs(b))))


def _case_id(case):
    name, kwargs = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", OPT_CASES, ids=_case_id)
def test_matches_torch_20_steps(case, dtype, torch):
    name, kwargs = case
    ours = _run_ours(name, kwargs, dtype, 20)
    theirs = _run_torch(torch, name, kwargs, dtype, 20)
    start = _data(dtype)[2]
    for a, w0 in zip(ours, start, strict=True):
        assert a.dtype == dtype
        assert not np.allclose(a, w0, rtol=1e-3)
    _assert_close(ours, theirs, RTOL[dtype])


@pytest.mark.parametrize("name, kwargs, groups", [
    ("SGD", {"lr": 0.05, "momentum": 0.9}, {"lr": 0.2, "nesterov": True}),
    ("Adam", {"lr": 0.01}, {"lr": 0.03, "betas": (0.5, 0.9), "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01}, {"centered": True, "momentum": 0.3}),
])
def test_param_groups_match_torch(name, kwargs, groups, torch):
    ours = _run_ours(name, kwargs, np.float32, 20, groups)
    theirs = _run_torch(torch, name, kwargs, np.float32, 20, groups)
    _assert_close(ours, theirs, 1e-5)


def _npz_round_trip(state_dict):
    """Flatten an optimizer state_dict into an .npz (as a checkpoint would) and rebuild it."""
    flat = {}
    for i, entry in state_dict["state"].items():
        for k, v in entry.items():
            flat[f"state.{i}.{k}"] = np.asarray(v)
    for gi, group in enumerate(state_dict["param_groups"]):
        for k, v in group.items():
            flat[f"param_groups.{gi}.{k}"] = np.asarray(v)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    buf.seek(0)
    loaded = np.load(buf)
    rebuilt = {"state": {}, "param_groups": [{} for _ in state_dict["param_groups"]]}
    for key in loaded.files:
        kind, index, name = key.split(".")
        if kind == "state":
            rebuilt["state"].setdefault(index, {})[name] = loaded[key]
        else:
            rebuilt["param_groups"][int(index)][name] = loaded[key]
    return rebuilt


def _train(opt, params, x, y, steps, schedule=None):
    for _ in range(steps):
        opt.zero_grad()
        for p, g in zip(params, _numpy_grads([p.data for p in params], x, y), strict=True):
            p.accumulate(g)
        opt.step()
        if schedule is not None:
            schedule.step()


SCHEDULES = {
    "none": None,
    "cosine": lambda opt: optim.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4),
    "onecycle": lambda opt: optim.OneCycleLR(opt, max_lr=0.05, total_steps=20),
    "warmup_step": lambda opt: optim.LinearWarmup(
        opt, 4, start_factor=0.1, after=optim.StepLR(opt, step_size=5, gamma=0.5)),
}


@pytest.mark.parametrize("through_npz", [False, True], ids=["dict", "npz"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("case", [OPT_CASES[3], OPT_CASES[6], OPT_CASES[9], OPT_CASES[13]],
                         ids=_case_id)
def test_state_dict_resume_is_bitwise(case, schedule, through_npz):
    name, kwargs = case
    make_schedule = SCHEDULES[schedule]
    x, y, weights = _data(np.float32)

    params = [Parameter(w.copy()) for w in weights]
    opt = getattr(optim, name)(_split(params, {"lr": kwargs["lr"] * 2}), **kwargs)
    sched = make_schedule(opt) if make_schedule else None
    _train(opt, params, x, y, 20, sched)
    uninterrupted = [p.data.copy() for p in params]

    params = [Parameter(w.copy()) for w in weights]
    opt = getattr(optim, name)(_split(params, {"lr": kwargs["lr"] * 2}), **kwargs)
    sched = make_schedule(opt) if make_schedule else None
    _train(opt, params, x, y, 10, sched)
    opt_state = opt.state_dict()
    sched_state = sched.state_dict() if sched else None
    saved_weights = [p.data.copy() for p in params]
    _train(opt, params, x, y, 3, sched)  # the saved state must not alias the live one
    if through_npz:
        opt_state = _npz_round_trip(opt_state)

    params = [Parameter(w) for w in saved_weights]
    opt = getattr(optim, name)(_split(params, {"lr": 0.5}), lr=0.25)
    sched = make_schedule(opt) if make_schedule else None
    opt.load_state_dict(opt_state)
    if sched is not None:
        sched.load_state_dict(sched_state)
    _train(opt, params, x, y, 10, sched)
    for a, b in zip(params, uninterrupted, strict=True):
        np.testing.assert_array_equal(a.data, b)


def test_state_dict_layout():
    params = [Parameter(np.ones((2, 3), np.float32)), Parameter(np.zeros(3, np.float32))]
    opt = optim.Adam(params, lr=0.1, amsgrad=True)
    assert opt.state_dict() == {"state": {}, "param_groups": [
        {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
         "amsgrad": True, "params": [0, 1]}]}
    params[0].grad[...] = 1.0
    opt.step()
    sd = opt.state_dict()
    assert sorted(sd["state"]) == [0, 1]
    assert sd["state"][0]["step"] == 1 and isinstance(sd["state"][0]["step"], int)
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["exp_avg"].dtype == np.float32
    assert sd["state"][0]["exp_avg"] is not opt.state[params[0]]["exp_avg"]


def test_load_state_dict_errors():
    params = [Parameter(np.ones((2, 3), np.float32)), Parameter(np.zeros(3, np.float32))]
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    params[0].grad[...] = 1.0
    opt.step()
    good = opt.state_dict()
    with pytest.raises(KeyError, match=r"SGD.load_state_dict: missing key 'state'"):
        opt.load_state_dict({"param_groups": good["param_groups"]})
    two_groups = optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}], lr=0.1)
    with pytest.raises(ValueError, match="the state has 1 param groups, this optimizer has 2"):
        two_groups.load_state_dict(good)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        opt.load_state_dict({**good, "state": {0: {"momentum_buffer": np.zeros(3)}}})
    with pytest.raises(KeyError, match="parameter 5"):
        opt.load_state_dict({**good, "state": {5: {"momentum_buffer": np.zeros(3)}}})
    bad_lr = [{**good["param_groups"][0], "lr": -1.0}]
    with pytest.raises(ValueError, match=r"SGD: invalid lr=-1\.0"):
        opt.load_state_dict({**good, "param_groups": bad_lr})
    assert opt.param_groups[0]["lr"] == 0.1  # a failed load changes nothing
    np.testing.assert_array_equal(opt.state[params[0]]["momentum_buffer"], np.ones((2, 3)))


def test_step_updates_in_place_without_allocating():
    rng = np.random.default_rng(0)
    big = (256, 1024)
    for name, kwargs in OPT_CASES:
        params = [Parameter(rng.standard_normal(big).astype(np.float32)),
                  Parameter(rng.standard_normal(7).astype(np.float32))]
        for p in params:
            p.grad[...] = rng.standard_normal(p.shape)
        opt = getattr(optim, name)(params, **kwargs)
        data = [p.data for p in params]
        opt.step()
        tracemalloc.start()
        try:
            base, _ = tracemalloc.get_traced_memory()
            opt.step()
            opt.step()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert all(p.data is d for p, d in zip(params, data, strict=True))
        # Python objects of the thread pool's hand-off (a few KiB; more if the pool starts
        # a worker), far below one array-sized buffer (1 MiB here)
        assert peak - base < 65536, f"{name} {kwargs} allocated {peak - base} bytes per step"


def test_zero_grad():
    params = [Parameter(np.ones(3, np.float32)), Parameter(np.ones((2, 2), np.float32))]
    opt = optim.RMSprop(params)
    for p in params:
        p.grad += 2.0
    grads = [p.grad for p in params]
    opt.zero_grad()
    assert all(p.grad is g and not g.any() for p, g in zip(params, grads, strict=True))



def _two_groups(ns, name="SGD", torch=None, **kwargs):
    """An optimizer of glasscnn.optim, or of torch.optim if ``torch`` is given, with two groups."""
    if torch is None:
        a, b = Parameter(np.zeros(1)), Parameter(np.zeros(1))
    else:
        a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    return getattr(ns, name)([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.02}], **kwargs)


SCHEDULE_CASES = {
    "step": (lambda o: optim.StepLR(o, step_size=7, gamma=0.5),
             lambda S, o: S.StepLR(o, step_size=7, gamma=0.5)),
    "cosine_periodic": (lambda o: optim.CosineAnnealingLR(o, T_max=10, eta_min=1e-3),
                        lambda S, o: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)),
    "cosine": (lambda o: optim.CosineAnnealingLR(o, T_max=30),
               lambda S, o: S.CosineAnnealingLR(o, T_max=30)),
    "onecycle": (lambda o: optim.OneCycleLR(o, max_lr=1.0, total_steps=30),
                 lambda S, o: S.OneCycleLR(o, max_lr=1.0, total_steps=30)),
    "onecycle_linear": (
        lambda o: optim.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=30, pct_start=0.25,
                                   anneal_strategy="linear", div_factor=10.0,
                                   final_div_factor=100.0, base_momentum=0.8),
        lambda S, o: S.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=30, pct_start=0.25,
                                  anneal_strategy="linear", div_factor=10.0,
                                  final_div_factor=100.0, base_momentum=0.8)),
    "warmup": (lambda o: optim.LinearWarmup(o, 5, start_factor=0.1),
               lambda S, o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5)),
    "warmup_cosine": (
        lambda o: optim.LinearWarmup(o, 5, start_factor=0.25,
                                     after=optim.CosineAnnealingLR(o, T_max=25, eta_min=1e-4)),
        lambda S, o: S.SequentialLR(o, [
            S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=5),
            S.CosineAnnealingLR(o, T_max=25, eta_min=1e-4)], milestones=[5])),
    "warmup_step": (
        lambda o: optim.LinearWarmup(o, 6, after=optim.StepLR(o, step_size=4, gamma=0.5)),
        lambda S, o: S.SequentialLR(o, [
            S.LinearLR(o, start_factor=1 / 3, end_factor=1.0, total_iters=6),
            S.StepLR(o, step_size=4, gamma=0.5)], milestones=[6])),
}


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_schedule_matches_torch(case, opt_name, torch):
    ours_factory, torch_factory = SCHEDULE_CASES[case]
    kwargs = {"momentum": 0.9} if opt_name == "SGD" else {}
    ours_opt = _two_groups(optim, opt_name, **kwargs)
    torch_opt = _two_groups(torch.optim, opt_name, torch, **kwargs)
    ours, theirs = ours_factory(ours_opt), torch_factory(torch.optim.lr_scheduler, torch_opt)
    for _ in range(31):
        np.testing.assert_allclose(ours.get_last_lr(), theirs.get_last_lr(), rtol=1e-12)
        np.testing.assert_allclose([g["lr"] for g in ours_opt.param_groups],
                                   theirs.get_last_lr(), rtol=1e-12)
        np.testing.assert_allclose(_momenta(ours_opt), _momenta(torch_opt), rtol=1e-12)
        if case.startswith("onecycle") and ours.last_epoch == 30:
            with pytest.raises(ValueError, match="OneCycleLR: tried to step 31 times"):
                ours.step()
            break
        ours_opt.step()
        torch_opt.step()
        ours.step()
        theirs.step()


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_schedule_state_dict_round_trip(case):
    factory = SCHEDULE_CASES[case][0]
    opt = _two_groups(optim, momentum=0.9)
    sched = factory(opt)
    expected = []
    for _ in range(25):
        sched.step()
        expected.append(sched.get_last_lr())
    opt = _two_groups(optim, momentum=0.9)
    sched = factory(opt)
    for _ in range(12):
        sched.step()
    state = sched.state_dict()
    opt = _two_groups(optim, momentum=0.9)
    sched = factory(opt)
    sched.load_state_dict(state)
    assert [g["lr"] for g in opt.param_groups] == expected[11]
    resumed = expected[:12]
    for _ in range(13):
        sched.step()
        resumed.append(sched.get_last_lr())
    assert resumed == expected


def test_schedule_changes_what_the_optimizer_does():
    p = Parameter(np.zeros(2, np.float32))
    opt = optim.SGD([p], lr=1.0)
    sched = optim.StepLR(opt, step_size=1, gamma=0.5)
    for expected in (-1.0, -1.5, -1.75):
        p.grad[...] = 1.0
        opt.step()
        sched.step()
        np.testing.assert_array_equal(p.data, [expected, expected])



@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e4])
def test_clip_grad_norm_matches_torch(max_norm, norm_type, dtype, torch):
    rng = np.random.default_rng(3)
    grads = [rng.standard_normal(s).astype(dtype) for s in [(3, 4, 2, 2), (5,), (7, 3)]]
    params = [Parameter(np.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad[...] = g
    tparams = [torch.zeros(g.shape, dtype=torch.from_numpy(g).dtype) for g in grads]
    for t, g in zip(tparams, grads, strict=True):
        t.grad = torch.tensor(g)
    total = optim.clip_grad_norm_(params, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type, foreach=False)
    assert isinstance(total, float)
    np.testing.assert_allclose(total, expected.item(), rtol=RTOL[dtype])
    for p, t in zip(params, tparams, strict=True):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=RTOL[dtype])
    if max_norm > total:
        for p, g in zip(params, grads, strict=True):
            np.testing.assert_array_equal(p.grad, g)


def test_clip_grad_norm_edge_cases():
    assert optim.clip_grad_norm_([], 1.0) == 0.0
    empty = Parameter(np.zeros(0, np.float32))
    assert optim.clip_grad_norm_([empty], 1.0, math.inf) == 0.0
    p = Parameter(np.array([3.0, 4.0], np.float32))
    p.grad[...] = p.data
    assert optim.clip_grad_norm_(p, 1.0) == 5.0
    np.testing.assert_allclose(p.grad, [0.6, 0.8], rtol=1e-6)
    p.grad[...] = [np.inf, 1.0]
    with pytest.raises(ValueError, match=r"clip_grad_norm_: the total 2\.0-norm .* inf"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match=r"clip_grad_norm_: norm_type must be > 0 .* -1\.0"):
        optim.clip_grad_norm_([p], 1.0, norm_type=-1)
    with pytest.raises(ValueError, match="clip_grad_norm_: max_norm must be >= 0, got -2"):
        optim.clip_grad_norm_([p], -2)



def _p():
    return [Parameter(np.zeros(2, np.float32))]


@pytest.mark.parametrize("build, message", [
    (lambda: optim.SGD(_p(), lr=-0.1), r"SGD: invalid lr=-0\.1"),
    (lambda: optim.SGD(_p(), lr=0.1, momentum=-0.5), r"SGD: invalid momentum=-0\.5"),
    (lambda: optim.SGD(_p(), lr=0.1, weight_decay=-1), r"SGD: invalid weight_decay=-1"),
    (lambda: optim.SGD(_p(), lr=0.1, nesterov=True), "SGD: nesterov=True requires .* momentum=0"),
    (lambda: optim.SGD(_p(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
     r"SGD: nesterov=True requires .* dampening=0\.1"),
    (lambda: optim.Adam(_p(), lr=-1e-3), r"Adam: invalid lr=-0\.001"),
    (lambda: optim.Adam(_p(), betas=(1.0, 0.999)), r"Adam: invalid betas=\(1\.0, 0\.999\)"),
    (lambda: optim.Adam(_p(), betas=(0.9, -0.1)), r"Adam: invalid betas=\(0\.9, -0\.1\)"),
    (lambda: optim.Adam(_p(), eps=-1.0), r"Adam: invalid eps=-1\.0"),
    (lambda: optim.AdamW(_p(), betas=(0.9, 1.5)), r"AdamW: invalid betas=\(0\.9, 1\.5\)"),
    (lambda: optim.AdamW(_p(), weight_decay=-0.01), r"AdamW: invalid weight_decay=-0\.01"),
    (lambda: optim.RMSprop(_p(), lr=-1.0), r"RMSprop: invalid lr=-1\.0"),
    (lambda: optim.RMSprop(_p(), momentum=-0.9), r"RMSprop: invalid momentum=-0\.9"),
    (lambda: optim.RMSprop(_p(), alpha=-0.5), r"RMSprop: invalid alpha=-0\.5"),
    (lambda: optim.SGD([], lr=0.1), r"SGD: got an empty parameter list \(params=\[\]\)"),
    (lambda: optim.Adam([]), r"Adam: got an empty parameter list"),
    (lambda: optim.AdamW(iter([])), r"AdamW: got an empty parameter list"),
    (lambda: optim.RMSprop([]), r"RMSprop: got an empty parameter list"),
    (lambda: optim.Adam([{"params": []}]), r"Adam: got an empty parameter list"),
    (lambda: optim.SGD([np.zeros(2)], lr=0.1), r"SGD: params\[0\] is a ndarray"),
    (lambda: optim.SGD(_p()[0], lr=0.1), "SGD: params must be a list .* got a Parameter"),
    (lambda: optim.SGD(2 * _p(), lr=0.1), r"SGD: params\[1\] .* more than one place"),
    (lambda: optim.Adam([{"params": _p(), "lr": -2.0}]), r"Adam: invalid lr=-2\.0"),
])
def test_bad_optimizer_input(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("build, message", [
    (lambda o: optim.StepLR(o, step_size=0), "StepLR: step_size must be a positive integer, got 0"),
    (lambda o: optim.StepLR(o, step_size=2.5), "StepLR: step_size .* got 2.5"),
    (lambda o: optim.CosineAnnealingLR(o, T_max=-3), "CosineAnnealingLR: T_max .* got -3"),
    (lambda o: optim.OneCycleLR(o, 1.0, total_steps=0), "OneCycleLR: total_steps .* got 0"),
    (lambda o: optim.OneCycleLR(o, 1.0, 10, pct_start=1.5), "OneCycleLR: pct_start .* 1.5"),
    (lambda o: optim.OneCycleLR(o, 1.0, 10, anneal_strategy="exp"), "OneCycleLR: .* 'exp'"),
    (lambda o: optim.OneCycleLR(o, [1.0], 10), r"OneCycleLR: max_lr has 1 values .* \[1.0\]"),
    (lambda o: optim.LinearWarmup(o, 0), "LinearWarmup: warmup_steps .* got 0"),
    (lambda o: optim.LinearWarmup(o, 5, start_factor=0.0), "LinearWarmup: start_factor .* 0.0"),
    (lambda o: optim.LinearWarmup(o, 5, after=optim.StepLR(_two_groups(optim), 2)),
     "LinearWarmup: after must be a schedule of the same optimizer"),
    (lambda o: optim.StepLR("sgd", 2), "StepLR: expected an Optimizer, got str"),
])
def test_bad_schedule_input(build, message):
    with pytest.raises(ValueError, match=message):
        build(_two_groups(optim))
