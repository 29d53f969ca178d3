"""The compiled CPU kernel for LRN (alexnet_lib/kernels/lrn.c): equal to
the plain formula with autograd in float32 and bfloat16, both layouts,
any n, groups, threads; built once and cached; a clear fallback."""
import pytest
import torch

from alexnet_lib import kernels, layers
from alexnet_lib.layers import local_response_norm


@pytest.fixture(scope="module")
def kernel():
    k = kernels.lrn_kernel()
    if k is None:
        pytest.skip(f"no compiled kernel here: {kernels.kernel_status()}")
    return k


def _forward_backward(fn, x, g):
    x = x.detach().requires_grad_(True)
    y = fn(x)
    gx, = torch.autograd.grad(y, x, g)
    return y, gx


# (shape, groups): L = H * W below, at and above the 64-position panel;
# channels_last rows below and above a panel of 64; a 3-d input
SHAPES = [((3, 12, 7, 9), 1), ((2, 16, 5, 5), 2), ((2, 8, 11, 13), 2),
          ((5, 24, 4, 4), 3), ((1, 6, 130, 1), 1), ((4, 10, 9), 1)]


@pytest.mark.parametrize("shape,groups", SHAPES)
@pytest.mark.parametrize("size", [1, 2, 5, 14, 15, 30])
@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_equals_the_plain_formula(kernel, shape, groups, size,
                                          channels_last):
    if channels_last and len(shape) != 4:
        pytest.skip("channels_last is a 4-d layout")
    torch.manual_seed(size)
    x = torch.relu(torch.randn(shape)) * 40
    g = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    got = _forward_backward(
        lambda t: local_response_norm(t, size, 1e-3, 0.75, 1.5,
                                      groups=groups), x, g)
    want = _forward_backward(
        lambda t: layers._lrn_reference(t, size, 1e-3, 0.75, 1.5, groups),
        x.double(), g.double())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for a, b in zip(got, want):
        assert a.dtype == torch.float32 and a.is_contiguous(memory_format=fmt)
        torch.testing.assert_close(a.double(), b, rtol=2e-6, atol=1e-6)
    # the layer really normalises here
    assert (got[0] - x).abs().max() > 0.1


@pytest.mark.parametrize("beta", [0.75, 0.5, 0.6])
@pytest.mark.parametrize("scale_by_size", [False, True])
def test_both_conventions_and_any_beta_match_torch(kernel, beta,
                                                   scale_by_size):
    torch.manual_seed(3)
    x = torch.randn(3, 20, 6, 7) * 20
    g = torch.randn(3, 20, 6, 7)
    alpha = 0.01
    ours = _forward_backward(
        lambda t: local_response_norm(t, 5, alpha, beta, 2.0,
                                      scale_by_size), x, g)
    torch_alpha = alpha if scale_by_size else alpha * 5
    ref = _forward_backward(
        torch.nn.LocalResponseNorm(5, torch_alpha, beta, 2.0), x, g)
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bfloat16_rounds_once_from_the_float32_result(kernel,
                                                      channels_last):
    # bf16 in, float32 inside, bf16 out: the result equals the float32
    # kernel on the same (bf16) inputs, rounded once to bf16
    torch.manual_seed(9)
    x = (torch.relu(torch.randn(4, 32, 9, 9)) * 30).bfloat16()
    g = torch.randn(4, 32, 9, 9).bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)

    def lrn(t):
        return local_response_norm(t, groups=2)
    y, gx = _forward_backward(lrn, x, g)
    y32, gx32 = _forward_backward(lrn, x.float(), g.float())
    assert y.dtype == gx.dtype == torch.bfloat16
    assert torch.equal(y, y32.bfloat16())
    assert torch.equal(gx, gx32.bfloat16())


def test_threads_split_the_work_without_changing_a_bit(kernel):
    torch.manual_seed(10)
    x = torch.relu(torch.randn(8, 96, 15, 15)) * 30
    g = torch.randn(8, 96, 15, 15)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(_forward_backward(
                lambda t: local_response_norm(t, groups=2), x, g))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert torch.equal(other[0], results[0][0])
        assert torch.equal(other[1], results[0][1])


def test_compiled_and_blocked_kernels_agree(kernel, monkeypatch):
    torch.manual_seed(11)
    x = torch.relu(torch.randn(4, 96, 13, 13)) * 30
    g = torch.randn(4, 96, 13, 13)
    compiled = _forward_backward(local_response_norm, x, g)
    monkeypatch.setitem(kernels._state, "kernel", None)
    blocked = _forward_backward(local_response_norm, x, g)
    # the forward's window sum and k + alpha * s round alike; only
    # d ** -0.75 (1 / sqrt(d * sqrt(d)) in both) may differ in the last bit
    torch.testing.assert_close(compiled, blocked, rtol=3e-7, atol=1e-6)


def test_non_float_dtypes_take_the_blocked_kernel(kernel):
    x = torch.relu(torch.randn(2, 8, 3, 3, dtype=torch.float64)) * 30
    y = local_response_norm(x)
    assert y.dtype == torch.float64
    assert y.grad_fn is None  # no grad asked: still computed
    x16 = x.half().requires_grad_()
    assert type(local_response_norm(x16).grad_fn).__name__ == \
        "_LocalResponseNormCPUBackward"


def test_the_build_is_cached_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    if kernels._compiler() is None:
        pytest.skip("no C compiler here")
    first = kernels._build()
    assert first.parent == tmp_path / "kernels" and first.exists()
    # a second build finds the file and compiles nothing
    def no_compiling(*args, **kwargs):
        raise OSError("the compiler was called")
    monkeypatch.setattr(kernels.subprocess, "run", no_compiling)
    assert kernels._build() == first
    # another CPU (a shared home on a mixed cluster) gets its own file
    monkeypatch.setattr(kernels, "_cpu_features", lambda: "flags: other")
    with pytest.raises(kernels.KernelUnavailable,
                       match="failed: the compiler was called"):
        kernels._build()


def test_no_compiler_falls_back_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(kernels, "_compiler", lambda: None)
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("ALEXNET_LRN_KERNEL", "auto")
    assert kernels.lrn_kernel() is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["alexnet_lib: LRN on CPU: blocked PyTorch kernel, slower "
                   "(no C compiler found (set CC, or install gcc or clang))"]
    x = torch.relu(torch.randn(2, 8, 3, 3)) * 30
    torch.testing.assert_close(
        local_response_norm(x), layers._lrn_reference(x, 5, 1e-4, 0.75,
                                                      2.0, 1))
    # asked for by name, a missing compiler is an error, not a fallback
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("ALEXNET_LRN_KERNEL", "c")
    with pytest.raises(kernels.KernelUnavailable,
                       match="ALEXNET_LRN_KERNEL=c but no C compiler"):
        kernels.lrn_kernel()
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("ALEXNET_LRN_KERNEL", "fast")
    with pytest.raises(ValueError, match="use auto, c or torch"):
        kernels.lrn_kernel()
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("ALEXNET_LRN_KERNEL", "torch")
    assert kernels.lrn_kernel() is None
    assert kernels.kernel_status().endswith("(ALEXNET_LRN_KERNEL=torch)")


def test_the_c_source_ships_in_the_package():
    assert kernels.SOURCE.name == "lrn.c" and kernels.SOURCE.exists()
    text = kernels.SOURCE.read_text()
    assert "int lrn_forward(" in text and "int lrn_backward(" in text


def test_a_forked_child_gets_its_own_threads(kernel):
    # the parent's thread pool does not survive fork(): the child must
    # not wait on threads that are not there
    import multiprocessing as mp
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork here")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.relu(torch.randn(4, 16, 9, 9)) * 30
        want = local_response_norm(x, groups=2)  # starts the pool
        ctx = mp.get_context("fork")
        with ctx.Pool(1) as pool:
            got = pool.apply_async(_lrn_in_child, (x,)).get(timeout=60)
        assert torch.equal(got, want)
    finally:
        torch.set_num_threads(before)


def _lrn_in_child(x):
    torch.set_num_threads(2)
    return local_response_norm(x, groups=2)
