"""The compiled CPU kernel for LRN (``lrn.c``), built on first use.

``pip install`` compiles nothing. The first time a CPU LRN runs, the
system C compiler (``$CC``, else ``cc``, ``gcc`` or ``clang``) builds
``lrn.c`` (plain C, no PyTorch headers, about a second) into the cache
folder, keyed by the source, the compiler and the CPU's features; later
processes load it from there. Where no compiler works, the library's
blocked PyTorch kernel runs instead: same formula, slower, and one line
says so. ``ALEXNET_LRN_KERNEL`` chooses: ``auto`` (default), ``c`` (build
or fail loudly) or ``torch`` (never build).

The kernel is called through ctypes, which releases the GIL. Where
PyTorch runs GNU OpenMP (its Linux wheels), ``lrn.c`` is built with
``-fopenmp`` against that same runtime and splits its work between
PyTorch's own ``torch.get_num_threads()`` threads; a second set of
threads would fight PyTorch's, which spin for a while after every
operation, and on two cores that made the kernel much slower inside a
training step than alone. Elsewhere, and in forked children, the work
is split between as many Python threads. ``lrn.c`` also fuses LRN with
the max-pooling after it (``layers.lrn_max_pool``).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

__all__ = ["lrn_kernel", "KernelUnavailable", "kernel_status"]

SOURCE = Path(__file__).with_name("lrn.c")
# -ffp-contract=off: no fused multiply-adds, so the forward's sums and
# k + alpha * s round as PyTorch's reference does; -fno-math-errno lets
# sqrtf vectorise. No -ffast-math: it would change results.
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno",
         "-fPIC", "-shared"]


class KernelUnavailable(RuntimeError):
    """The C kernel could not be built or loaded."""


class _Opts(ctypes.Structure):
    _fields_ = [("C", ctypes.c_int64), ("L", ctypes.c_int64),
                ("n", ctypes.c_int64), ("before", ctypes.c_int64),
                ("after", ctypes.c_int64), ("alpha", ctypes.c_float),
                ("beta", ctypes.c_float), ("k", ctypes.c_float),
                ("bf16", ctypes.c_int)]


class _PoolOpts(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in
                ("B", "H", "W", "groups", "z", "s", "Ho", "Wo")]


def _cache_dir() -> Path:
    from alexnet_lib.config import cache_root  # $ALEXNET_CACHE or ~/.cache
    return cache_root() / "kernels"


def _cpu_features() -> str:
    """What -march=native depends on: a .so built on one CPU must not be
    loaded on another (a shared home on a mixed cluster)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _torch_runs_gnu_openmp() -> bool:
    """Whether this process has GNU OpenMP (``libgomp``) loaded, as
    PyTorch's Linux wheels do. Only then is the kernel built with
    ``-fopenmp``: it then shares PyTorch's own OpenMP threads instead of
    starting a second runtime whose threads would fight them for cores."""
    try:
        with open("/proc/self/maps") as f:
            return any(os.path.basename(line.split()[-1]).startswith(
                "libgomp") for line in f if "/" in line)
    except OSError:
        return False


def _build(threads: str = "auto") -> Path:
    """The kernel built for this process: with OpenMP where PyTorch
    runs GNU OpenMP and the compiler can, else without.
    ``threads="python"`` (``ALEXNET_LRN_THREADS=python``) always builds
    without (the kernel's work then goes to Python threads, as before it
    shared PyTorch's)."""
    if threads == "auto" and _torch_runs_gnu_openmp():
        try:
            return _build_with([*FLAGS, "-fopenmp"])
        except KernelUnavailable:
            pass
    return _build_with(FLAGS)


def _build_with(flags: list[str]) -> Path:
    cc = _compiler()
    if cc is None:
        raise KernelUnavailable("no C compiler found (set CC, or install "
                                "gcc or clang)")
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), cc.encode(), " ".join(flags).encode(),
                 _cpu_features().encode(), platform.machine().encode()):
        key.update(part)
    target = _cache_dir() / f"lrn-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target, then rename: other processes see the
    # finished file or none
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE), "-lm"],
                              capture_output=True, text=True, timeout=120)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise KernelUnavailable(f"{os.path.basename(cc)} failed: {last}")
        os.replace(tmp, target)
    except (OSError, subprocess.SubprocessError) as e:
        raise KernelUnavailable(f"building the LRN kernel failed: {e}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


class _Kernel:
    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        opts, pool = ctypes.POINTER(_Opts), ctypes.POINTER(_PoolOpts)
        signatures = {
            "lrn_forward_all": [ptr, ptr, i64, i32, i32, opts],
            "lrn_backward_all": [ptr, ptr, ptr, i64, i32, i32, opts],
            "lrn_pool_forward_all": [ptr, ptr, ptr, i32, i32, opts, pool],
            "lrn_pool_backward_all": [ptr, ptr, ptr, ptr, i32, i32, opts,
                                      pool],
            "lrn_openmp": []}
        for name, args in signatures.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = ctypes.c_int, args
        self.lib, self.path = lib, path
        self.openmp = bool(lib.lrn_openmp())
        self._home = os.getpid()  # OpenMP's threads do not survive fork()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size, self._pool_pid = 0, os.getpid()

    def _run(self, fn, before, after, threads):
        """fn(*before, share, threads, *after): all shares at once (on
        PyTorch's OpenMP threads when built with OpenMP), or one share
        per Python thread (lrn.c, "Threads"). A forked child takes
        Python threads: GNU OpenMP's pool does not survive fork(), and
        a child that starts a parallel region waits for it forever."""
        threads = max(1, threads)
        if threads == 1 or (self.openmp and os.getpid() == self._home):
            codes = [fn(*before, -1, threads, *after)]
        else:
            pool = self._threads(threads)
            codes = [j.result() for j in [
                pool.submit(fn, *before, t, threads, *after)
                for t in range(threads)]]
        if any(codes):
            raise MemoryError("LRN kernel: out of memory for its scratch")

    def _threads(self, threads: int) -> ThreadPoolExecutor:
        # a forked child inherits the pool but not its threads
        if (self._pool is None or self._pool_size != threads
                or self._pool_pid != os.getpid()):
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.shutdown()
            self._pool = ThreadPoolExecutor(threads,
                                            thread_name_prefix="lrn")
            self._pool_size, self._pool_pid = threads, os.getpid()
        return self._pool

    def forward(self, x, y, R, opts, threads):
        self._run(self.lib.lrn_forward_all, (x.data_ptr(), y.data_ptr(), R),
                  (ctypes.byref(opts),), threads)

    def backward(self, x, g, gx, R, opts, threads):
        self._run(self.lib.lrn_backward_all,
                  (x.data_ptr(), g.data_ptr(), gx.data_ptr(), R),
                  (ctypes.byref(opts),), threads)

    def pool_forward(self, x, out, where, opts, pool, threads):
        """LRN then max-pooling: ``out`` pooled, ``where`` (uint8) the
        position i*z + j of each maximum in its window."""
        self._run(self.lib.lrn_pool_forward_all,
                  (x.data_ptr(), out.data_ptr(), where.data_ptr()),
                  (ctypes.byref(opts), ctypes.byref(pool)), threads)

    def pool_backward(self, x, g, where, gx, opts, pool, threads):
        self._run(self.lib.lrn_pool_backward_all,
                  (x.data_ptr(), g.data_ptr(), where.data_ptr(),
                   gx.data_ptr()),
                  (ctypes.byref(opts), ctypes.byref(pool)), threads)


_lock = threading.Lock()
_state: dict = {}


def kernel_status() -> str:
    """One line: which CPU LRN kernel this process uses, and why."""
    lrn_kernel()
    return _state["status"]


def lrn_kernel() -> _Kernel | None:
    """The compiled kernel, or None (then the blocked PyTorch one runs).

    Decided once per process; ``ALEXNET_LRN_KERNEL=c`` makes a failed
    build an error instead of a fallback.
    """
    if "kernel" in _state:
        return _state["kernel"]
    with _lock:
        if "kernel" in _state:
            return _state["kernel"]
        choice = os.environ.get("ALEXNET_LRN_KERNEL", "auto").lower()
        if choice not in ("auto", "c", "torch"):
            raise ValueError(f"ALEXNET_LRN_KERNEL={choice!r}: use auto, c "
                             f"or torch")
        threads = os.environ.get("ALEXNET_LRN_THREADS", "auto").lower()
        if threads not in ("auto", "python"):
            raise ValueError(f"ALEXNET_LRN_THREADS={threads!r}: use auto "
                             f"or python")
        kernel, status = None, "LRN on CPU: blocked PyTorch kernel " \
                               "(ALEXNET_LRN_KERNEL=torch)"
        if choice != "torch":
            try:
                kernel = _Kernel(_build(threads))
                status = "LRN on CPU: compiled C kernel" + (
                    " on PyTorch's OpenMP threads" if kernel.openmp
                    else "")
            except (KernelUnavailable, OSError) as e:
                if choice == "c":
                    raise KernelUnavailable(
                        f"ALEXNET_LRN_KERNEL=c but {e}") from None
                status = (f"LRN on CPU: blocked PyTorch kernel, slower "
                          f"({e})")
                print(f"alexnet_lib: {status}", file=sys.stderr)
        _state["kernel"], _state["status"] = kernel, status
        return kernel


def _reset() -> None:
    """Forget the decision (tests)."""
    with _lock:
        _state.clear()


def lrn_opts(C: int, L: int, size: int, alpha: float, beta: float, k: float,
             dtype: torch.dtype) -> _Opts:
    return _Opts(C, L, size, size // 2, (size - 1) // 2, alpha, beta, k,
                 int(dtype == torch.bfloat16))


def pool_opts(B: int, H: int, W: int, groups: int, z: int, s: int
              ) -> _PoolOpts:
    """Geometry of a max-pooling (z x z windows s apart, no padding,
    floor rounding) on (B, C, H, W) maps, for the fused kernel."""
    return _PoolOpts(B, H, W, groups, z, s, (H - z) // s + 1,
                     (W - z) // s + 1)
