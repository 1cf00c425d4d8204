"""dropoutlib.torch's API surface against torch 2.13: signatures, reprs, errors, warnings, quirks.

Most checks run the same call through torch and through dropoutlib and require the same
*outcome*: the same exception type and message, or the same result bits, the same aliasing and
the same warnings (category and text).
"""

from __future__ import annotations

import decimal
import inspect
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import dropoutlib.torch as D

FUNC_NAMES = ["dropout", "alpha_dropout", "dropout1d", "dropout2d", "dropout3d"]
FUNC_NAMES += ["feature_alpha_dropout"]
MODULE_NAMES = ["Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"]
MODULE_NAMES += ["FeatureAlphaDropout"]


def outcome(call, *, seed: int = 3):
    """What a call does: ('ok', bits, shape, dtype, is-first-arg) or ('raise', type, message)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.manual_seed(seed)
        try:
            x, y = call()
            if isinstance(y, torch.Tensor):
                res = ("ok", y.detach().clone(), y.shape, y.dtype, y is x, torch.get_rng_state())
            else:
                res = ("ok", repr(y))
        except Exception as err:  # the type and text are what we compare
            res = ("raise", type(err), str(err))
    return res, [(w.category, str(w.message)) for w in caught]


def assert_same_outcome(make_call):
    """``make_call(namespace)`` builds the call for torch's F/nn and for dropoutlib.torch."""
    (a, wa), (b, wb) = outcome(lambda: make_call(F, nn)), outcome(lambda: make_call(D, D))
    assert wa == wb
    assert a[0] == b[0], (a, b)
    for u, v in zip(a[1:], b[1:], strict=True):
        if isinstance(u, torch.Tensor):
            assert u.dtype == v.dtype and u.shape == v.shape
            assert torch.equal(u.reshape(-1).view(torch.uint8), v.reshape(-1).view(torch.uint8))
        else:
            assert u == v


@pytest.mark.parametrize("name", FUNC_NAMES)
def test_functional_signatures(name):
    assert inspect.signature(getattr(D, name), eval_str=True) == inspect.signature(getattr(F, name))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_signature_repr_and_state(name):
    ours, ref = getattr(D, name), getattr(nn, name)
    assert inspect.signature(ours.__init__, eval_str=True) == inspect.signature(ref.__init__)
    for args in [(), (0.2,), (1,), (True,), (0.3, True), (torch.tensor(0.5),), (0.1, "yes")]:
        assert repr(ours(*args)) == repr(ref(*args))
        assert str(ours(*args)) == str(ref(*args))
    m = ours(0.25)
    assert m.training and not list(m.parameters()) and m.state_dict() == {}
    assert not m.eval().training and m.train().training
    assert isinstance(m, nn.Module) and type(m).__mro__[1].__name__ == "_DropoutNd"


BAD_P = [-0.1, 1.1, 2, 1.0000001, -1e-300, float("inf"), "0.5", None, decimal.Decimal("2")]


@pytest.mark.parametrize("p", BAD_P, ids=repr)
@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_constructor_errors(name, p):
    assert_same_outcome(lambda f, m: (None, getattr(m, name)(p)))


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_constructor_too_many_args(name):
    assert_same_outcome(lambda f, m: (None, getattr(m, name)(0.5, True, 3)))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "p", [*BAD_P, float("nan"), np.float64("nan"), torch.tensor(1.5)], ids=repr
)
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_functional_bad_p(name, p, training):
    """ValueError from Python, TypeError for non-numbers, RuntimeError for NaN (even in eval)."""
    x = torch.ones(2, 3, 4)
    assert_same_outcome(lambda f, m: (x, getattr(f, name)(x, p, training)))


ODD_ARGS = [
    ("training='yes'", lambda x: ((x, 0.5, "yes"), {})),
    ("training=None", lambda x: ((x, 0.5, None), {})),
    ("training=1", lambda x: ((x, 0.5, 1), {})),
    ("training=np.bool_", lambda x: ((x, 0.5, np.bool_(True)), {})),
    ("training=tensor", lambda x: ((x, 0.5, torch.tensor(True)), {})),
    ("p=Decimal", lambda x: ((x, decimal.Decimal("0.5"), True), {})),
    ("p=1-d tensor", lambda x: ((x, torch.tensor([0.5]), True), {})),
    ("p=grad tensor", lambda x: ((x, torch.tensor(0.5, requires_grad=True), True), {})),
    ("p=0-d tensor", lambda x: ((x, torch.tensor(0.3), True), {})),
    ("p=np.float32", lambda x: ((x, np.float32(0.3), True), {})),
    ("p=np.int64", lambda x: ((x, np.int64(1), True), {})),
    ("p=True", lambda x: ((x, True, True), {})),
    ("p=complex", lambda x: ((x, 0.5 + 0j, True), {})),
    ("input=list", lambda x: (([1.0, 2.0], 0.5, True), {})),
    ("input=ndarray", lambda x: ((np.ones((2, 3, 4)), 0.5, True), {})),
    ("input=list,inplace", lambda x: (([1.0], 0.5, True, True), {})),
    ("kw inplace", lambda x: ((x,), {"p": 0.3, "training": True, "inplace": True})),
    ("defaults", lambda x: ((x,), {})),
    ("too many", lambda x: ((x, 0.5, True, False, 1), {})),
]


@pytest.mark.parametrize("args", [a for _, a in ODD_ARGS], ids=[i for i, _ in ODD_ARGS])
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_functional_argument_parsing(name, args):
    """Types torch's parser accepts or refuses, with its exact messages; defaults included."""

    def make(f, m):
        def call():
            a, kw = args(torch.linspace(-1, 1, 24).reshape(2, 3, 4))
            return a[0], getattr(f, name)(*a, **kw)

        return call

    (a, wa), (b, wb) = outcome(make(F, nn)), outcome(make(D, D))
    assert wa == wb and a[0] == b[0] and len(a) == len(b)
    for u, v in zip(a[1:], b[1:], strict=True):
        assert torch.equal(u, v) if isinstance(u, torch.Tensor) else u == v


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("rank", range(7))
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_rank_errors_and_warnings(name, rank, p, training):
    """Every rank 0-6: dropout1d's error, dropout2d/3d's warnings, feature noise's error."""
    x = torch.arange(1.0, 1.0 + 2**rank).reshape((2,) * rank)
    assert_same_outcome(lambda f, m: (x, getattr(f, name)(x, p, training)))


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64]
)
@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_integer_bool_complex_inputs(name, dtype, p):
    """Refused in training with 0 < p < 1 with torch's error; p = 0 and p = 1 work as in torch."""
    x = torch.ones(2, 3, 4, dtype=dtype)
    assert_same_outcome(lambda f, m: (x, getattr(f, name)(x, p, True)))


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("name", FUNC_NAMES)
def test_inplace_on_leaf_requiring_grad(name, p):
    """In place on a leaf that requires grad: torch's RuntimeError (also p = 1; not p = 0)."""
    assert_same_outcome(
        lambda f, m: (
            None,
            getattr(f, name)(torch.ones(2, 3, 4, requires_grad=True), p, True, True),
        )
    )


@pytest.mark.parametrize("name", FUNC_NAMES)
def test_inplace_under_no_grad_and_saved_tensor(name):
    def no_grad(f, m):
        x = torch.ones(2, 3, 4, requires_grad=True)
        with torch.no_grad():
            return None, getattr(f, name)(x, 0.5, True, True)

    assert_same_outcome(no_grad)

    def saved(f, m):  # sigmoid saves its output; mutating it breaks backward
        x = torch.linspace(-1, 1, 24, requires_grad=True).reshape(2, 3, 4)
        y = getattr(f, name)(torch.sigmoid(x), 0.5, True, True)
        y.sum().backward()
        return None, x.grad

    assert_same_outcome(saved)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("name", MODULE_NAMES)
def test_modules_train_eval_and_inplace(name, inplace):
    """Train and eval through the module; AlphaDropout variants ignore ``inplace``."""
    for train in (True, False):

        def call(f, m, train=train):
            layer = getattr(m, name)(0.4, inplace).train(train)
            x = torch.linspace(-2, 2, 2 * 3 * 2 * 2 * 2).reshape(2, 3, 2, 2, 2)
            if name == "Dropout1d":
                x = x.reshape(2, 3, 8)
            if name == "Dropout2d":
                x = x.reshape(2, 3, 2, 4)
            y = layer(x)
            return x, torch.stack([y.flatten(), x.flatten()])

        assert_same_outcome(call)


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_p_changed_later_and_nan(name):
    """``m.p = 2.0`` after construction and NaN p fail at forward, in train and in eval."""
    for p, train in [(2.0, True), (2.0, False), (float("nan"), True), (float("nan"), False)]:

        def call(f, m, p=p, train=train):
            layer = getattr(m, name)(0.5).train(train)
            layer.p = p
            return None, layer(torch.ones(2, 3, 4, 5))

        assert_same_outcome(call)


def test_alpha_defaults_are_eval():
    """F.alpha_dropout(x, 0.5) and F.feature_alpha_dropout(x, 0.5) are the identity."""
    x = torch.randn(4, 3, 2)
    for name in ("alpha_dropout", "feature_alpha_dropout"):
        assert getattr(D, name)(x, 0.5) is x and getattr(F, name)(x, 0.5) is x


def test_alpha_inplace_module_does_not_mutate():
    x = torch.randn(8, 3, 4)
    before = x.clone()
    for cls in (D.AlphaDropout, D.FeatureAlphaDropout):
        y = cls(0.5, inplace=True)(x)
        assert y is not x and torch.equal(x, before)
    assert D.alpha_dropout(x, 0.5, True, True) is x and not torch.equal(x, before)


def test_alpha_constants_from_spec():
    """The spec's measured alpha values: p = 0.2 keeps a*x + 0.309..., drops to -1.236..."""
    x = torch.zeros(4000, dtype=torch.float64)
    y = D.alpha_dropout(x, 0.2, True)
    assert set(y.unique().tolist()) == {0.30903996214409446, -1.2361598485763778}


def test_dropped_values_sign_and_nan():
    """Dropped: -0.0 for negatives, NaN for +-inf and NaN; p = 1 likewise (x * 0)."""
    x = torch.tensor([-1.5, 2.0, float("inf"), float("nan"), -0.0, 3.0])
    y = D.dropout(x, 1.0)
    assert torch.equal(y.view(torch.int32), F.dropout(x, 1.0).view(torch.int32))
    assert torch.signbit(y[[0, 4]]).all() and torch.isnan(y[2:4]).all()


def test_unbatched_equals_batch_of_one():
    """PyTorch's own check: dropout1d(x) == dropout1d(x[None])[0] from the same RNG state."""
    x = torch.rand(50, 2)
    for fn, shape in ((D.dropout1d, (50, 2)), (D.dropout3d, (5, 2, 2, 2))):
        x = torch.rand(shape)
        torch.manual_seed(4)
        a = fn(x, 0.5)
        torch.manual_seed(4)
        assert torch.equal(a, fn(x.unsqueeze(0), 0.5).squeeze(0))


def test_gradcheck_with_reseeded_rng():
    """gradcheck and gradgradcheck pass when the seed is re-set inside the function."""
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    for fn in (D.dropout, D.dropout2d, lambda t, p: D.alpha_dropout(t, p, True)):

        def seeded(t, fn=fn):
            torch.manual_seed(0)
            return fn(t, 0.3)

        assert torch.autograd.gradcheck(seeded, (x,))
        assert torch.autograd.gradgradcheck(seeded, (x,))


def test_torch_function_dispatch():
    """Tensor subclasses with __torch_function__ see our functional, as with torch's."""
    seen = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            seen.append(func)
            return super().__torch_function__(func, types, args, kwargs or {})

    x = torch.ones(2, 3).as_subclass(Logged)
    D.dropout(x, 0.5)
    assert seen[0] is D.dropout


@pytest.mark.parametrize(("p", "training"), [(0.5, True), (0.0, True), (1.0, True), (0.5, False)])
def test_nested_tensors_go_through_native_dropout(p, training):
    """ATen sends nested tensors to native_dropout (RNG used even at p = 0 and p = 1)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # nested tensors are a prototype API
        nt = torch.nested.nested_tensor([torch.randn(3, 4), torch.randn(5, 4)])
    results = []
    for fn in (F.dropout, D.dropout):
        torch.manual_seed(1)
        y = fn(nt, p, training)
        results.append((y.unbind(), torch.get_rng_state(), y is nt))
    (ya, sa, ia), (yb, sb, ib) = results
    assert all(torch.equal(a, b) for a, b in zip(ya, yb, strict=True))
    assert torch.equal(sa, sb) and ia == ib
