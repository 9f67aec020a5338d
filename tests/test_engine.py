"""The backward engine: graph shapes, accumulation, retain_graph, no_grad, detach, hooks."""
import numpy as np
import pytest

import tinynet
from tinynet.autograd import Function


def leaf(values, device="cpu", dtype=np.float64):
    return tinynet.tensor(np.asarray(values, dtype=dtype), device=device, requires_grad=True)


def test_scalar_graph_matches_hand_derivative(device):
    x, w, b = leaf(3.0, device), leaf(-2.0, device), leaf(0.5, device)
    y = x * w + b
    y.backward()
    assert x.grad.item() == -2.0 and w.grad.item() == 3.0 and b.grad.item() == 1.0


def test_diamond_graph_sums_both_paths(device):
    x = leaf([1.0, 2.0], device)
    a = x * 3.0
    y = a * a + a  # dy/dx = (2a + 1) * 3
    y.backward(tinynet.ones(2, dtype=tinynet.float64, device=device))
    np.testing.assert_allclose(x.grad.numpy() if device == "cpu" else x.grad.cpu().numpy(),
                               (2 * np.array([3.0, 6.0]) + 1) * 3)


def test_tensor_reused_many_times():
    x = leaf(2.0)
    y = x
    for _ in range(50):
        y = y + x  # y = 51 x
    y.backward()
    assert x.grad.item() == 51.0


def test_same_tensor_both_operands_and_grads_not_aliased():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    a.grad.data += 100  # must not leak into b.grad through a shared array
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])


def test_leaf_gradients_accumulate_across_backward_calls():
    x = leaf([1.0, 2.0])
    for _ in range(3):
        (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * np.array([1.0, 2.0]))


def test_broadcast_gradient_summed_back_to_input_shape():
    x = leaf(np.ones((3, 1)))
    b = leaf(np.ones(4))
    (x * b).sum().backward()
    assert x.grad.shape == (3, 1) and b.grad.shape == (4,)
    np.testing.assert_allclose(x.grad.numpy(), np.full((3, 1), 4.0))
    np.testing.assert_allclose(b.grad.numpy(), np.full(4, 3.0))


def test_100k_op_chain_has_no_recursion_limit():
    x = leaf(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0
    del y  # freeing a 100k-node graph must not overflow the C stack either


def test_second_backward_without_retain_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = leaf([1.0, 2.0])
    y = (x.exp()).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp([1.0, 2.0]))


def test_no_grad_records_nothing_and_decorator_form():
    x = leaf([1.0])
    with tinynet.no_grad():
        y = x * 2
    assert not y.requires_grad and y.grad_fn is None

    @tinynet.no_grad()
    def double(t):
        return t * 2
    assert double(x).grad_fn is None
    with tinynet.no_grad():
        with tinynet.enable_grad():
            assert (x * 2).requires_grad
    assert tinynet.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = leaf([2.0])
    y = x * x
    z = y.detach() * x  # gradient only through the second factor
    z.backward()
    assert x.grad.item() == 4.0
    assert y.detach().data is y.data


def test_hooks_see_and_replace_gradients():
    x = leaf([1.0, 2.0])
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.numpy().copy()))
    y = x * 3
    y.register_hook(lambda g: g * 10)  # non-leaf hook replaces the gradient flowing on
    y.sum().backward()
    np.testing.assert_allclose(seen[0], [30.0, 30.0])
    np.testing.assert_allclose(x.grad.numpy(), [30.0, 30.0])
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert len(seen) == 1


def test_retain_grad_keeps_non_leaf_grad():
    x = leaf([1.0, 2.0])
    y = x * 2
    y.retain_grad()
    (y * y).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [4.0, 8.0])
    z = x * 2
    (z * z).sum().backward()
    assert z.grad is None  # non-leaf grads are not kept unless asked


def test_backward_on_non_scalar_without_gradient_names_the_op():
    y = leaf([1.0, 2.0]) * 2
    with pytest.raises(RuntimeError, match=r"backward.*scalar.*\(2,\)"):
        y.backward()


def test_backward_with_wrong_gradient_shape():
    y = leaf([1.0, 2.0]) * 2
    with pytest.raises(RuntimeError, match=r"backward.*\(3,\).*\(2,\)"):
        y.backward(tinynet.ones(3))


def test_backward_on_tensor_without_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tinynet.tensor([1.0]) * 2).backward()


def test_requires_grad_on_integer_tensor_is_refused():
    with pytest.raises(RuntimeError, match="requires_grad.*floating"):
        tinynet.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating"):
        tinynet.tensor([1, 2]).requires_grad_()


def test_integer_outputs_never_require_grad():
    class Floor(Function):
        @staticmethod
        def forward(ctx, x):
            return ctx.xp.floor(x).astype(np.int64)

        @staticmethod
        def backward(ctx, grad):
            return None
    y = Floor.apply(leaf([1.5]))
    assert not y.requires_grad and y.grad_fn is None


def test_multi_output_function_gets_zero_grad_for_unused_output():
    class SplitHalves(Function):
        @staticmethod
        def forward(ctx, x):
            return x[:1] * 1, x[1:] * 2

        @staticmethod
        def backward(ctx, g0, g1):
            return ctx.xp.concatenate([g0, 2 * g1])
    x = leaf([1.0, 1.0])
    first, second = SplitHalves.apply(x)
    (second * 5).backward(tinynet.ones(1, dtype=tinynet.float64))
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 10.0])


def test_custom_function_and_gradcheck():
    class Softplus(Function):
        """y = log(1 + e^x); dy/dx = sigmoid(x)."""
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return ctx.xp.logaddexp(0, x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad / (1 + ctx.xp.exp(-x))
    x = leaf(np.linspace(-3, 3, 7))
    assert tinynet.gradcheck(Softplus.apply, [x])


def test_gradcheck_reports_a_wrong_backward():
    class BadSquare(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * x  # should be 2x
    x = leaf([1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match=r"BadSquareBackward.*input 0.*numerical.*analytic"):
        tinynet.gradcheck(BadSquare.apply, [x])
    assert tinynet.gradcheck(BadSquare.apply, [leaf([1.0])], raise_exception=False) is False


def test_gradcheck_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        tinynet.gradcheck(lambda t: t * 2, [leaf([1.0], dtype=np.float32)])


def test_mixing_devices_names_both():
    from tinynet.autograd import _check_same_device
    from tinynet.backend import Device

    class FakeCuda:
        device = Device("cuda", 0)
    with pytest.raises(RuntimeError, match="mul.*cpu and cuda:0"):
        _check_same_device("mul", [tinynet.tensor([1.0]), FakeCuda()])


def test_trace_prints_each_node_as_backward_visits_it():
    from tinynet.autograd import trace
    x = leaf([1.0, 2.0])
    lines = []
    with trace(printer=lines.append):
        (x.exp() * 3).sum().backward()
    assert [line.split(":")[0] for line in lines] == ["SumBackward", "MulBackward", "ExpBackward"]
    assert "(2,)" in lines[-1] and "|g|=" in lines[-1]


def test_the_implicit_seed_is_one_shared_read_only_array(device):
    """backward() without gradient= starts from a cached array of ones (no fill per call on a
    GPU): the same object every time, which nobody can write into, and no backward sees it
    changed by a hook that changes its gradient in place."""
    from tinynet.autograd import implicit_seed, is_implicit_seed
    x = leaf([1.0, 2.0], device)
    seen = []

    class Probe(Function):
        @staticmethod
        def forward(ctx, a):
            return a.sum()

        @staticmethod
        def backward(ctx, grad):
            seen.append(grad)
            return ctx.xp.broadcast_to(grad, (2,))

    Probe.apply(x).backward()
    Probe.apply(x).backward()
    assert seen[0] is seen[1] and is_implicit_seed(seen[0]) and seen[0] is implicit_seed(seen[0])
    with pytest.raises(ValueError, match="read-only"):
        seen[0][...] = 5.0
    y = Probe.apply(x)
    y.register_hook(lambda g: g.mul_(7.0))  # in place, on a copy of the seed
    y.backward()
    assert not is_implicit_seed(seen[-1])
    Probe.apply(x).backward()
    assert is_implicit_seed(seen[-1]) and tinynet.backend.to_host(seen[-1]) == 1.0
    np.testing.assert_array_equal(x.grad.cpu().numpy(), [10.0, 10.0])  # 1 + 1 + 7 + 1
    assert not is_implicit_seed(tinynet.ones((), device=device).data)


# ------------------------------------------------------------ leaf gradients kept without a copy
def test_a_leaf_keeps_a_gradient_only_it_owns_and_copies_any_other():
    """The engine lets a leaf keep the array a backward made for it alone as its .grad (no copy);
    a gradient passed through from the node's own input, one returned for two inputs, one made
    while the graph is kept (retain_graph), or one a hook sees, is copied."""
    from tinynet.autograd import Function
    made = []

    class Fresh(Function):          # a new array for its input
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            made.append(grad * 2)
            return made[-1]

    class PassThrough(Function):    # its incoming gradient, as it is
        @staticmethod
        def forward(ctx, x):
            return x + 0

        @staticmethod
        def backward(ctx, grad):
            return grad

    class Twice(Function):          # one new array for both of its inputs
        @staticmethod
        def forward(ctx, a, b):
            return a + b

        @staticmethod
        def backward(ctx, grad):
            made.append(grad.copy())
            return made[-1], made[-1]

    x = tinynet.tensor([1.0, 2.0], requires_grad=True)
    Fresh.apply(x).sum().backward()
    assert x.grad.data is made[-1]                       # kept: no one else holds it
    x.grad = None
    Fresh.apply(x).sum().backward(retain_graph=True)
    assert x.grad.data is not made[-1]                   # the graph is kept: copied
    x.grad = None
    given = tinynet.tensor([1.0, 1.0])
    PassThrough.apply(x).backward(given)
    assert x.grad.data is not given.data                 # passed through: the caller's array, copied
    np.testing.assert_array_equal(x.grad.data, [1.0, 1.0])
    a, b = tinynet.tensor([1.0], requires_grad=True), tinynet.tensor([1.0], requires_grad=True)
    for _ in range(2):                                   # shared: a copy each, so the sums stay apart
        Twice.apply(a, b).sum().backward()
    assert a.grad.data is not b.grad.data
    np.testing.assert_array_equal(a.grad.data, [2.0])
    np.testing.assert_array_equal(b.grad.data, [2.0])
    seen = []
    h = tinynet.tensor([1.0], requires_grad=True)
    h.register_hook(lambda g: seen.append(g) or None)
    Fresh.apply(h).sum().backward()
    assert h.grad.data is not made[-1]                   # a hook saw it: copied


def test_kept_gradients_accumulate_correctly_over_steps():
    """With gradients kept without a copy, a Linear trained by plain backward/step calls gets the
    same weights as PyTorch-free arithmetic: two backward passes without zero_grad add up."""
    layer = tinynet.nn.Linear(3, 2)
    x = tinynet.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    layer(x).sum().backward()
    first = layer.weight.grad.data.copy()
    layer(x).sum().backward()
    np.testing.assert_allclose(layer.weight.grad.data, 2 * first)
    np.testing.assert_allclose(first, np.tile(x.data.sum(axis=0), (2, 1)))
