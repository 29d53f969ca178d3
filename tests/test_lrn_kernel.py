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
# channels_last rows below and above a panel of 64; a 3-d input;
# channels_last panels that take two chunks of the kernel's 4,096
# values, and lines longer than a chunk
SHAPES = [((3, 12, 7, 9), 1), ((2, 16, 5, 5), 2), ((2, 8, 11, 13), 2),
          ((5, 24, 4, 4), 3), ((1, 6, 130, 1), 1), ((4, 10, 9), 1),
          ((2, 96, 7, 7), 1), ((1, 4100, 2, 3), 1)]


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
@pytest.mark.parametrize("shape,groups", [((4, 32, 9, 9), 2),
                                          ((2, 24, 23, 23), 2),
                                          ((2, 96, 7, 7), 1),
                                          ((1, 4100, 2, 3), 1)])
def test_bfloat16_rounds_once_from_the_float32_result(kernel, shape, groups,
                                                      channels_last):
    # bf16 in, float32 inside, bf16 out: the result equals the float32
    # kernel on the same (bf16) inputs, rounded once to bf16 (channels
    # last: lines of 12, 96 and 4,100 values, converted in chunks)
    torch.manual_seed(9)
    x = (torch.relu(torch.randn(shape)) * 30).bfloat16()
    g = torch.randn(shape).bfloat16()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)

    def lrn(t):
        return local_response_norm(t, groups=groups)
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


# --- LRN fused with the max-pooling after it (layers.lrn_max_pool) ---

def _bits(t):
    return t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


def _pool_both_ways(lrn, pool, x, g, monkeypatch):
    """(output, gradient) fused and apart, and whether fusion ran."""
    ran = []
    apply = layers._LRNMaxPoolC.apply
    monkeypatch.setattr(layers._LRNMaxPoolC, "apply",
                        lambda *a: ran.append(1) or apply(*a))
    out = []
    for fuse in (True, False):
        monkeypatch.setattr(layers, "FUSE_LRN_POOL", fuse)
        out.append(_forward_backward(
            lambda t: layers.lrn_max_pool(lrn, pool, t), x, g))
    return out, len(ran)


# (shape, groups, z, s): the paper's pools on conv1-like maps and on maps
# small enough for the kernel's image-by-image mode (the CIFAR proxies'),
# non-overlapping and stride-1 pools, rows wider than a panel of 64
# positions in either mode, channels_last rows of more than 64 lines
POOLS = [((2, 96, 55, 55), 2, 3, 2), ((3, 16, 13, 13), 2, 3, 2),
         ((2, 8, 12, 12), 1, 2, 2), ((2, 6, 9, 10), 1, 2, 1),
         ((1, 4, 7, 70), 2, 3, 3), ((2, 130, 6, 6), 1, 3, 2),
         ((1, 8, 70, 130), 2, 3, 2)]


@pytest.mark.parametrize("shape,groups,z,s", POOLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_fused_lrn_and_pool_equal_the_two_layers_bit_for_bit(
        kernel, monkeypatch, shape, groups, z, s, dtype, channels_last,
        ties):
    gen = torch.Generator().manual_seed(sum(shape) + z + s)
    if ties:  # few distinct values: equal maxima in most windows
        x = torch.relu(torch.randint(-2, 4, shape, generator=gen) * 7.0)
    else:
        x = torch.relu(torch.randn(shape, generator=gen)) * 30
    b, c, h, w = shape
    g = torch.randn(b, c, (h - z) // s + 1, (w - z) // s + 1, generator=gen)
    x, g = x.to(dtype), g.to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        g = g.contiguous(memory_format=torch.channels_last)
    lrn = layers.LocalResponseNorm(groups=groups)
    (fused, apart), ran = _pool_both_ways(lrn, torch.nn.MaxPool2d(z, s), x,
                                          g, monkeypatch)
    assert ran == 1  # the fused kernel computed the first
    for a, b_ in zip(fused, apart):
        assert a.dtype == b_.dtype and a.stride() == b_.stride()
        assert torch.equal(_bits(a), _bits(b_))  # every bit, even -0


@pytest.mark.parametrize("size,beta,scale_by_size", [(3, 0.5, True),
                                                     (4, 0.6, False),
                                                     (1, 0.75, False)])
def test_fused_any_n_beta_and_convention(kernel, monkeypatch, size, beta,
                                         scale_by_size):
    torch.manual_seed(20)
    x = torch.relu(torch.randn(2, 12, 11, 11)) * 30
    g = torch.randn(2, 12, 5, 5)
    lrn = layers.LocalResponseNorm(size, 1e-3, beta, 1.5, scale_by_size)
    (fused, apart), ran = _pool_both_ways(lrn, torch.nn.MaxPool2d(3, 2), x,
                                          g, monkeypatch)
    assert ran == 1
    assert all(torch.equal(_bits(a), _bits(b)) for a, b in zip(fused, apart))


def test_fused_nan_and_infinity_as_pytorch_pools_them(kernel, monkeypatch):
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.relu(torch.randn(2, 8, 9, 9)) * 30
        x[0, 3, 2, 2], x[1, 5, 4, 5] = float("nan"), float("inf")
        x, g = x.to(dtype), torch.randn(2, 8, 4, 4).to(dtype)
        (fused, apart), _ = _pool_both_ways(
            layers.LocalResponseNorm(), torch.nn.MaxPool2d(3, 2), x, g,
            monkeypatch)
        for a, b in zip(fused, apart):
            assert torch.equal(a.isnan(), b.isnan())
            assert torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("channels,side", [(96, 27), (24, 23)])
def test_fused_threads_split_the_work_without_changing_a_bit(kernel,
                                                             channels, side):
    # rows of one image apart (paper-sized maps), whole images apart
    # (proxy-sized maps)
    torch.manual_seed(21)
    x = (torch.relu(torch.randn(5, channels, side, side)) * 30).bfloat16()
    x = x.contiguous(memory_format=torch.channels_last)
    g = torch.randn(5, channels, (side - 3) // 2 + 1,
                    (side - 3) // 2 + 1).bfloat16()
    lrn, pool = layers.LocalResponseNorm(groups=2), torch.nn.MaxPool2d(3, 2)
    before, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(_forward_backward(
                lambda t: layers.lrn_max_pool(lrn, pool, t), x, g))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(_bits(a), _bits(b))
                   for a, b in zip(other, results[0]))


def test_fusion_steps_aside_where_it_cannot_hold(kernel, monkeypatch):
    torch.manual_seed(22)
    x = torch.relu(torch.randn(2, 8, 9, 9)) * 30
    lrn = layers.LocalResponseNorm()
    cases = {  # each computes pool(lrn(x)) with the layers apart
        "ceil_mode": (lrn, torch.nn.MaxPool2d(3, 2, ceil_mode=True)),
        "padding": (lrn, torch.nn.MaxPool2d(3, 2, padding=1)),
        "dilation": (lrn, torch.nn.MaxPool2d(3, 2, dilation=2)),
        "an average pool": (lrn, torch.nn.AvgPool2d(3, 2)),
        "no LRN": (torch.nn.Identity(), torch.nn.MaxPool2d(3, 2)),
        "float64": (lrn, torch.nn.MaxPool2d(3, 2)),
    }
    ran = []
    apply = layers._LRNMaxPoolC.apply
    monkeypatch.setattr(layers._LRNMaxPoolC, "apply",
                        lambda *a: ran.append(1) or apply(*a))
    for name, (norm, pool) in cases.items():
        t = x.double() if name == "float64" else x
        torch.testing.assert_close(layers.lrn_max_pool(norm, pool, t),
                                   pool(norm(t)), rtol=0, atol=0)
    assert ran == []
    # a hook must see the LRN output, so a hooked layer runs on its own
    seen = []
    handle = lrn.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    layers.lrn_max_pool(lrn, torch.nn.MaxPool2d(3, 2), x)
    handle.remove()
    assert seen == [(2, 8, 9, 9)] and ran == []
    monkeypatch.setattr(layers, "FUSE_LRN_POOL", False)  # the switch
    layers.lrn_max_pool(lrn, torch.nn.MaxPool2d(3, 2), x)
    assert ran == []
    monkeypatch.setattr(layers, "FUSE_LRN_POOL", True)
    layers.lrn_max_pool(lrn, torch.nn.MaxPool2d(3, 2), x)
    assert ran == [1]


def test_fused_second_derivatives_take_the_plain_formula(kernel):
    torch.manual_seed(23)
    x = (torch.relu(torch.randn(1, 6, 7, 7)) * 3).requires_grad_()
    lrn, pool = layers.LocalResponseNorm(), torch.nn.MaxPool2d(3, 2)
    gx, = torch.autograd.grad(layers.lrn_max_pool(lrn, pool, x).sum(), x,
                              create_graph=True)
    assert gx.requires_grad  # differentiable again
    want, = torch.autograd.grad(pool(lrn(x)).sum(), x)
    torch.testing.assert_close(gx.detach(), want, rtol=1e-6, atol=1e-7)
    (gx * gx).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_paper_alexnet_trains_the_same_fused_or_apart(kernel, monkeypatch):
    # one SGD step of the paper's network: loss and every gradient equal
    # to the bit with LRN and pooling fused or apart, in float32 and in
    # the cpu profile's bf16 autocast with channels_last
    from alexnet_lib.models import create_model
    for bf16 in (False, True):
        grads = []
        for fuse in (True, False):
            monkeypatch.setattr(layers, "FUSE_LRN_POOL", fuse)
            torch.manual_seed(24)
            model = create_model("alexnet", num_classes=10)
            x = torch.randn(2, 3, 224, 224) * 60
            if bf16:
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(
                    model(x), torch.tensor([1, 7]))
            loss.backward()
            grads.append([loss.detach()] + [p.grad for p in
                                             model.parameters()])
        assert all(torch.equal(_bits(a), _bits(b))
                   for a, b in zip(*grads))


def test_openmp_and_python_threads_builds_agree(kernel, monkeypatch,
                                                tmp_path):
    # where PyTorch runs GNU OpenMP the kernel shares its threads; a
    # build without OpenMP (elsewhere) splits the work on Python threads
    if kernels._compiler() is None:
        pytest.skip("no C compiler here")
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    plain = kernels._Kernel(kernels._build_with(kernels.FLAGS))
    assert not plain.openmp
    if not kernels._torch_runs_gnu_openmp():  # never a second runtime
        assert not kernel.openmp
    torch.manual_seed(25)
    x = (torch.relu(torch.randn(3, 32, 15, 15)) * 30).bfloat16()
    g = torch.randn(3, 32, 7, 7).bfloat16()
    lrn, pool = layers.LocalResponseNorm(groups=2), torch.nn.MaxPool2d(3, 2)
    results = []
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for k in (kernel, plain):
            monkeypatch.setitem(kernels._state, "kernel", k)
            results.append(_forward_backward(
                lambda t: layers.lrn_max_pool(lrn, pool, t), x, g)
                + _forward_backward(lambda t: lrn(t), x, torch.ones_like(x)))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(_bits(a), _bits(b)) for a, b in zip(*results))


def test_python_threads_on_request(monkeypatch, tmp_path):
    if kernels._compiler() is None:
        pytest.skip("no C compiler here")
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path))
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("ALEXNET_LRN_THREADS", "python")
    assert not kernels.lrn_kernel().openmp
    assert kernels.kernel_status() == "LRN on CPU: compiled C kernel"
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("ALEXNET_LRN_THREADS", "openmp")
    with pytest.raises(ValueError, match="use auto or python"):
        kernels.lrn_kernel()
