r"""Native CPU kernels, compiled on first use (XLA FFI custom calls).

:func:`ensf_em_arctan` is the reverse-SDE analysis of the ensemble score filter fused into one
C++ loop (``ensf_cpu.cc``): per-member prior score, component-wise arctan observations with
diagonal noise, and the ``"gaussian_ars"`` increments of :mod:`assimilax.diffusion.noise`
(ARS-4x32-7 with AES-NI and Box--Muller). Each element of the ensemble stays in registers for all
reverse-SDE steps, where XLA's fused loop reads and writes the ensemble at every step and cannot
use the AES instructions. The XLA path of :func:`~assimilax.filters.ensemble_score_filter`
computes the same analysis (same increments bit for bit, the arithmetic up to float rounding);
the tests compare both.

The source is compiled with the system's ``g++`` and ``-march=native`` into a cache folder
(``$ASSIMILAX_NATIVE_CACHE``, default ``~/.cache/assimilax/native``, or a temporary folder when
the home is read-only) under a name that hashes the
source, the compiler, the JAX version and the CPU's flags, so that a shared home on machines with
different CPUs never loads a library built for another. :func:`available` is ``False`` (and the
XLA path is used) when there is no compiler, the CPU lacks AVX2 or AES-NI, the platform is not
x86-64 Linux, or ``ASSIMILAX_NATIVE=0``; :func:`status` says why.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import jax
import jax.numpy as jnp

_SRC = Path(__file__).with_name("ensf_cpu.cc")
_TARGETS = {"assimilax_ensf_em_arctan": "AssimilaxEnsfEmArctan", "assimilax_ars_words": "AssimilaxArsWords"}
_lock = threading.Lock()
_state: dict = {}


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""


def _cache_dir() -> Path:
    """``$ASSIMILAX_NATIVE_CACHE``, else ``~/.cache/assimilax/native``, else (a read-only home) a
    folder of this user's under the system's temporary directory."""
    candidates = [Path(os.environ["ASSIMILAX_NATIVE_CACHE"])] if os.environ.get("ASSIMILAX_NATIVE_CACHE") else []
    candidates += [Path.home() / ".cache" / "assimilax" / "native",
                   Path(tempfile.gettempdir()) / f"assimilax-native-{os.getuid()}"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise RuntimeError(f"no writable cache folder among {[str(c) for c in candidates]}")


def _build() -> Path:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++) on PATH")
    flags = _cpu_flags()
    if not {"avx2", "aes"} <= set(flags.split()):
        raise RuntimeError("the CPU lacks AVX2 or AES-NI")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    include = jax.ffi.include_dir()
    tag = hashlib.sha256("\0".join([_SRC.read_text(), version, jax.__version__, include, flags]).encode()).hexdigest()[:16]
    cache = _cache_dir()
    lib = cache / f"ensf_cpu-{tag}.so"
    if lib.exists():
        return lib
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    cmd = [cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno", "-ffp-contract=fast", "-w",
           f"-I{include}", str(_SRC), "-o", tmp]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        os.unlink(tmp)
        raise RuntimeError(f"compiling {_SRC.name} failed:\n{res.stderr[-2000:]}")
    os.replace(tmp, lib)  # atomic: a concurrent process never loads a half-written library
    return lib


def _load():
    with _lock:
        if _state:
            return _state
        if os.environ.get("ASSIMILAX_NATIVE", "1") == "0":
            _state.update(ok=False, reason="disabled by ASSIMILAX_NATIVE=0")
        elif platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
            _state.update(ok=False, reason=f"not x86-64 Linux ({platform.system()} {platform.machine()})")
        else:
            try:
                path = _build()
                dll = ctypes.cdll.LoadLibrary(str(path))
                for name, symbol in _TARGETS.items():
                    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(dll, symbol)), platform="cpu")
                _state.update(ok=True, reason=f"loaded {path}", dll=dll)
            except Exception as exc:  # no compiler, no AES-NI, ...: the XLA path is used
                _state.update(ok=False, reason=f"{type(exc).__name__}: {exc}")
        return _state


def available() -> bool:
    """Whether the native CPU kernels are built and registered (compiles them on first call)."""
    return _load()["ok"]


def status() -> str:
    """Why :func:`available` is what it is (the library path, or the reason for the XLA path)."""
    return _load()["reason"]


def ensf_em_arctan(x, xf, y, prec, coef, keys):
    r"""Fused EnSF reverse-SDE analysis (CPU only; call :func:`available` first).

    For every element :math:`e` of ``x`` ``(N, d)`` with component :math:`i = e \bmod d`, the
    ``K`` steps :math:`x \leftarrow c_x x + c_e x^f_e + c_\ell\,p_i\,(y_i - \arctan x)/(1+x^2)
    + s\,z`, with ``coef`` ``(K, 4)`` rows :math:`(c_x, c_e, c_\ell, s)`, ``prec`` :math:`p`
    ``(d,)``, ``y`` ``(d,)`` and the increments :math:`z` of block :math:`b = \lfloor k/4\rfloor`
    drawn as :func:`assimilax.diffusion.noise.gaussian_ars_block` under the key words
    ``keys[b]`` (``(ceil(K/4), 4)`` ``uint32``). float32. **Returns:** ``(N, d)``."""
    if not available():
        raise RuntimeError(f"native kernels unavailable: {status()}")
    out = jax.ShapeDtypeStruct(x.shape, jnp.float32)
    return jax.ffi.ffi_call("assimilax_ensf_em_arctan", out, vmap_method="sequential")(
        x.astype(jnp.float32), xf.astype(jnp.float32), y.astype(jnp.float32), prec.astype(jnp.float32),
        coef.astype(jnp.float32), keys.astype(jnp.uint32))


def ars_words(key_words, n: int):
    r"""ARS-4x32-7 words of the counters :math:`(c, 0, 0, 0)`, ``c = 0..n-1`` (``n`` a multiple of 8),
    under ``key_words`` (4 ``uint32``), computed with AES-NI. **Returns:** ``(n, 4)`` ``uint32``."""
    if not available():
        raise RuntimeError(f"native kernels unavailable: {status()}")
    if n % 8:
        raise ValueError(f"n must be a multiple of 8, got {n}")
    out = jax.ShapeDtypeStruct((n, 4), jnp.uint32)
    return jax.ffi.ffi_call("assimilax_ars_words", out)(jnp.asarray(key_words, jnp.uint32))


__all__ = ["available", "status", "ensf_em_arctan", "ars_words"]
