"""LRN (§3.3) against the hand formula and PyTorch; locally connected."""
import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from alexnet_lib import layers
from alexnet_lib.layers import (LocallyConnected2d, LocalResponseNorm,
                                local_response_norm)


def lrn_loops(a, n=5, alpha=1e-4, beta=0.75, k=2.0):
    """The paper's §3.3 formula, one neuron at a time (odd n)."""
    B, N, H, W = a.shape
    b = torch.empty_like(a)
    for bi in range(B):
        for i in range(N):
            for x in range(H):
                for y in range(W):
                    lo, hi = max(0, i - n // 2), min(N - 1, i + n // 2)
                    s = sum(a[bi, j, x, y] ** 2 for j in range(lo, hi + 1))
                    b[bi, i, x, y] = a[bi, i, x, y] / (k + alpha * s) ** beta
    return b


@pytest.fixture
def blocked(monkeypatch):
    """Run the blocked PyTorch kernel, as on a machine with no C compiler
    (the compiled kernel is tested in test_lrn_kernel.py)."""
    from alexnet_lib import kernels
    monkeypatch.setitem(kernels._state, "kernel", None)
    monkeypatch.setitem(kernels._state, "status", "forced for a test")


@pytest.fixture
def acts():
    torch.manual_seed(0)
    return torch.relu(torch.randn(2, 7, 3, 4, dtype=torch.float64)) * 30


def test_paper_defaults():
    m = LocalResponseNorm()
    assert (m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 2.0)
    assert not m.scale_by_size


@pytest.mark.parametrize("n,alpha,beta,k", [(5, 1e-4, 0.75, 2.0),
                                            (3, 0.01, 0.5, 1.0),
                                            (9, 1e-3, 0.75, 1.0)])
def test_lrn_equals_the_hand_formula(acts, n, alpha, beta, k):
    want = lrn_loops(acts, n, alpha, beta, k)
    got = local_response_norm(acts, n, alpha, beta, k)
    torch.testing.assert_close(got, want)
    # the normalisation really acts here (not a near-identity test)
    assert (got - acts).abs().max() > 1e-3 * acts.abs().max()


@pytest.mark.parametrize("size", [1, 2, 4, 5, 9, 13, 14, 30])
@pytest.mark.parametrize("shape", [(2, 11, 6), (3, 11, 5, 4),
                                   (2, 11, 3, 4, 2)])
def test_lrn_matches_torch_in_both_conventions(size, shape):
    torch.manual_seed(1)
    x = (torch.randn(shape) * 20).requires_grad_(True)
    g = torch.randn(shape)
    for scale_by_size, torch_alpha in ((False, 0.01 * size), (True, 0.01)):
        ours = LocalResponseNorm(size, 0.01, 0.75, 2.0, scale_by_size)
        ref = torch.nn.LocalResponseNorm(size, torch_alpha, 0.75, 2.0)
        y, y_ref = ours(x), ref(x)
        torch.testing.assert_close(y, y_ref)
        gx, = torch.autograd.grad(y, x, g)
        gx_ref, = torch.autograd.grad(y_ref, x, g)
        torch.testing.assert_close(gx, gx_ref)


def test_paper_alpha_is_torch_alpha_times_n():
    x = torch.relu(torch.randn(4, 96, 9, 9)) * 50
    torch.testing.assert_close(
        LocalResponseNorm()(x),
        torch.nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)(x))
    torch.testing.assert_close(
        LocalResponseNorm(scale_by_size=True)(x),
        torch.nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(x))


@pytest.mark.parametrize("scale_by_size", [False, True])
def test_lrn_gradcheck(scale_by_size):
    torch.manual_seed(2)
    x = torch.randn(2, 6, 3, 3, dtype=torch.float64, requires_grad=True)

    def f(t):
        return local_response_norm(t * 10, 5, 0.01, 0.75, 2.0,
                                   scale_by_size)
    assert gradcheck(f, (x,))
    assert gradgradcheck(f, (x,))  # the backward is differentiable too


def test_lrn_groups_normalise_each_block_alone():
    x = torch.relu(torch.randn(2, 96, 5, 5)) * 40
    both = local_response_norm(x, groups=2)
    halves = torch.cat([local_response_norm(h) for h in x.chunk(2, 1)], 1)
    torch.testing.assert_close(both, halves)
    # channels 47 and 48 sit in different blocks: results differ from
    # one window across all 96 maps exactly there
    across = local_response_norm(x)
    assert not torch.allclose(both[:, 46:50], across[:, 46:50])
    torch.testing.assert_close(both[:, 2:45], across[:, 2:45])


def test_lrn_half_precision_keeps_dtype():
    x = torch.relu(torch.randn(2, 16, 4, 4)) * 30
    y = local_response_norm(x.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), local_response_norm(x),
                               rtol=1e-2, atol=1e-2)


def _forward_backward(fn, x, g):
    x = x.detach().requires_grad_(True)
    y = fn(x)
    gx, = torch.autograd.grad(y, x, g)
    return y, gx


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale_by_size", [False, True])
def test_lrn_half_precision_backward_matches_float32(dtype, scale_by_size,
                                                     blocked):
    torch.manual_seed(4)
    x = (torch.relu(torch.randn(3, 20, 5, 6)) * 30).to(dtype)
    g = torch.randn(3, 20, 5, 6).to(dtype)

    def lrn(t):
        return local_response_norm(t, 5, 1e-3, 0.75, 2.0, scale_by_size,
                                   groups=2)
    y, gx = _forward_backward(lrn, x, g)
    assert y.dtype == gx.dtype == dtype
    # float32 on the same (rounded) inputs: only the final rounding of
    # the output and of the gradient to 8 (bf16) or 11 bits differs
    y32, gx32 = _forward_backward(lrn, x.float(), g.float())
    tol = 2 ** -7 if dtype == torch.bfloat16 else 2 ** -10
    torch.testing.assert_close(y.float(), y32, rtol=tol, atol=tol)
    torch.testing.assert_close(gx.float(), gx32, rtol=tol,
                               atol=tol * gx32.abs().max().item())


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 9, 13, 14, 15, 30])
@pytest.mark.parametrize("groups", [1, 3])
def test_cpu_kernel_equals_the_plain_formula(size, groups):
    # the blocked kernel with its hand-derived backward (layers.py)
    # against the same formula written with autograd ops
    torch.manual_seed(5)
    x = torch.relu(torch.randn(4, 12, 7, 5, dtype=torch.float64)) * 40
    g = torch.randn(4, 12, 7, 5, dtype=torch.float64)
    fast = _forward_backward(
        lambda t: local_response_norm(t, size, 1e-3, 0.75, 1.5,
                                      groups=groups), x, g)
    ref = _forward_backward(
        lambda t: layers._lrn_reference(t, size, 1e-3, 0.75, 1.5, groups),
        x, g)
    torch.testing.assert_close(fast, ref)


@pytest.mark.parametrize("beta", [0.75, 0.5, 0.6])
def test_cpu_kernel_in_many_blocks(monkeypatch, beta, blocked):
    # blocks of 2 rows over 7 (B * groups) rows: the last one is short;
    # beta 0.75 and 0.5 take the rsqrt paths, 0.6 the generic pow
    monkeypatch.setattr(layers, "LRN_BLOCK", 2 * 8 * 6)
    torch.manual_seed(6)
    x = torch.relu(torch.randn(7, 8, 2, 3)) * 40
    g = torch.randn(7, 8, 2, 3)
    fast = _forward_backward(
        lambda t: local_response_norm(t, 5, 1e-3, beta), x, g)
    ref = _forward_backward(
        lambda t: layers._lrn_reference(t, 5, 1e-3, beta, 2.0, 1), x, g)
    torch.testing.assert_close(fast, ref)


def test_lrn_channels_last_keeps_its_layout_and_values(monkeypatch, blocked):
    monkeypatch.setattr(layers, "LRN_BLOCK", 2 * 8 * 6)  # several blocks
    torch.manual_seed(7)
    x = torch.relu(torch.randn(5, 16, 3, 4)) * 40
    g = torch.randn(5, 16, 3, 4)
    cl = torch.channels_last
    y, gx = _forward_backward(lambda t: local_response_norm(t, groups=2),
                              x.contiguous(memory_format=cl),
                              g.contiguous(memory_format=cl))
    assert y.is_contiguous(memory_format=cl)
    assert gx.is_contiguous(memory_format=cl)
    want = _forward_backward(lambda t: local_response_norm(t, groups=2),
                             x, g)
    torch.testing.assert_close((y, gx), want)
    # a non-contiguous input (every other channel) is handled too
    wide = torch.relu(torch.randn(5, 32, 3, 4)) * 40
    torch.testing.assert_close(local_response_norm(wide[:, ::2]),
                               local_response_norm(wide[:, ::2].clone()))


def test_lrn_saves_only_its_input_for_backward():
    # d and p are recomputed in the backward: the layer adds no stored
    # activations to a training step (the ReLU before it keeps x anyway)
    x = (torch.relu(torch.randn(2, 16, 5, 5)) * 30).requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t) or t, lambda t: t):
        y = local_response_norm(x)
    assert len(saved) == 1 and saved[0] is x
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_lrn_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="at least 3 dims"):
        local_response_norm(torch.ones(4, 5))
    with pytest.raises(ValueError, match="cannot be split into 2"):
        local_response_norm(torch.ones(1, 5, 2, 2), groups=2)
    with pytest.raises(ValueError, match="size and groups must be >= 1"):
        LocalResponseNorm(size=0)


def test_lrn_repr_names_the_convention():
    assert "scale_by_size=True" in repr(LocalResponseNorm(scale_by_size=True))
    assert "groups=2" in repr(LocalResponseNorm(groups=2))


# ------------------------------------------------------ LocallyConnected2d

def local_loops(x, layer):
    """Every output position with its own filters, written out."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    xp = F.pad(x, (layer.padding[1],) * 2 + (layer.padding[0],) * 2)
    oh, ow = layer.output_size
    out = torch.empty(x.shape[0], layer.out_channels, oh, ow,
                      dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            w = layer.weight[i * ow + j]            # (out, C*kh*kw)
            out[:, :, i, j] = patch.flatten(1) @ w.T + layer.bias[:, i, j]
    return out


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_locally_connected_equals_loops(stride, padding):
    torch.manual_seed(3)
    layer = LocallyConnected2d(3, 4, (6, 5), 3, stride, padding).double()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(layer(x), local_loops(x, layer))


def test_locally_connected_shapes_and_parameter_count():
    layer = LocallyConnected2d(64, 32, 6, 3, padding=1)
    assert layer.output_size == (6, 6)
    assert layer.weight.shape == (36, 32, 64 * 9)
    assert layer.bias.shape == (32, 6, 6)  # unshared biases too
    assert sum(p.numel() for p in layer.parameters()) == 36 * 32 * 577
    assert layer(torch.randn(2, 64, 6, 6)).shape == (2, 32, 6, 6)
    assert LocallyConnected2d(3, 8, 7, 3, stride=2).output_size == (3, 3)
    no_bias = LocallyConnected2d(3, 8, 7, 3, bias=False)
    assert no_bias.bias is None and len(list(no_bias.parameters())) == 1


def test_locally_connected_with_tied_weights_is_a_convolution():
    conv = torch.nn.Conv2d(5, 7, 3, padding=1)
    local = LocallyConnected2d(5, 7, 4, 3, padding=1)
    with torch.no_grad():
        local.weight.copy_(conv.weight.flatten(1).expand(16, 7, 45))
        local.bias.copy_(conv.bias[:, None, None].expand(7, 4, 4))
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(local(x), conv(x))


def test_locally_connected_gradcheck_and_bad_input():
    layer = LocallyConnected2d(2, 3, 4, 3, padding=1).double()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    assert gradcheck(layer, (x,))
    with pytest.raises(ValueError, match=r"expects \(B, 2, 4, 4\)"):
        layer(torch.randn(1, 2, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="does not fit"):
        LocallyConnected2d(2, 3, 2, 5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lrn_on_cuda_equals_the_cpu_kernel(dtype):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: the GPU path of the layer")
    torch.manual_seed(8)
    x = (torch.relu(torch.randn(4, 96, 13, 13)) * 30).to(dtype)
    g = torch.randn(4, 96, 13, 13).to(dtype)

    def lrn(t):
        return local_response_norm(t, groups=2)
    cpu = _forward_backward(lrn, x, g)
    gpu = _forward_backward(lrn, x.cuda(), g.cuda())
    tol = 1e-5 if dtype == torch.float32 else 2 ** -7
    for want, got in zip(cpu, gpu):
        assert got.dtype == dtype
        torch.testing.assert_close(got.cpu().float(), want.float(),
                                   rtol=tol, atol=tol * want.abs().max())
