"""Build and load the fused C++ kernels (``rnnzoo/engines/csrc/``) at first use.

``torch.utils.cpp_extension.load`` compiles the ``.cpp`` files of ``csrc/`` with ninja (in
parallel) into torch's extension cache (``$TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``); later processes reuse the cached library. torch rebuilds
only when a ``.cpp`` file changes, not a header, so the library name carries a hash of
EVERY file in ``csrc/`` (sources and headers): editing a family header gives a new name,
hence a fresh build, and two checkouts with different kernels never share a build.
The library registers its ops with ``TORCH_LIBRARY`` (no pybind11), so they are called as
``torch.ops.rnnzoo_fused.*`` and the build only compiles ATen headers.

Vector width: ATen's ``at::vec::Vectorized`` picks AVX-512 / AVX2 / scalar code from the
``CPU_CAPABILITY_*`` macro and the compiler flags it is built with; it does not dispatch at
run time inside an extension. So the build asks torch which capability this CPU has
(``torch.backends.cpu.get_cpu_capability()``, which also honours ``ATEN_CPU_CAPABILITY``),
compiles for exactly that, and puts the capability (and torch's version) in the library name:
a cache shared by machines with different CPUs holds one build per capability, never a wrong
one. No ``-march=native``: the flags name only the instruction sets torch itself uses.

``load_ops()`` raises ``FusedBuildError`` when the library cannot be built (no compiler,
no ninja, a compile error); the engine turns that into one warning and the loop engine.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

CSRC = Path(__file__).resolve().parent / "csrc"
NAMESPACE = "rnnzoo_fused"

#: compiler flags per torch CPU capability (the ones ATen compiles its own kernels with)
ISA_FLAGS: dict[str, list[str]] = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c"],
}


class FusedBuildError(RuntimeError):
    """The fused kernels could not be built or loaded on this machine."""


_lock = threading.Lock()
_ops: Any = None
_error: FusedBuildError | None = None


def cpu_capability() -> str:
    """torch's vector capability for this CPU: "AVX512", "AVX2", or another name (scalar)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # very old or exotic builds: build the portable scalar version
        return "DEFAULT"


def openmp_flags() -> list[str]:
    """``-fopenmp`` where torch itself runs on OpenMP (its Linux builds): ``at::parallel_for``
    is a header template that runs serially unless the extension is compiled with OpenMP.
    The library then shares torch's libgomp (same soname, already loaded)."""
    uses_openmp = "OpenMP" in torch.__config__.parallel_info()
    return ["-fopenmp"] if uses_openmp and sys.platform.startswith("linux") else []


def build_flags(capability: str) -> list[str]:
    """Compiler flags for ``capability``; unknown capabilities get the portable build."""
    cap = capability if capability in ISA_FLAGS else "DEFAULT"
    flags = ["-O3", f"-DCPU_CAPABILITY={cap}", *ISA_FLAGS.get(cap, []), *openmp_flags()]
    if cap != "DEFAULT":
        flags.append(f"-DCPU_CAPABILITY_{cap}")
    return flags


def csrc_files() -> list[Path]:
    """Every source and header of the kernels, sorted (``csrc/**/*.cpp`` and ``*.h``)."""
    return sorted(p for p in CSRC.rglob("*") if p.suffix in (".cpp", ".h"))


def sources() -> list[Path]:
    """The translation units: ``csrc/*.cpp``."""
    return sorted(CSRC.glob("*.cpp"))


def source_hash() -> str:
    """8 hex digits of a hash over every kernel file's path and contents."""
    digest = hashlib.sha256()
    for path in csrc_files():
        digest.update(path.relative_to(CSRC).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def library_name(capability: str) -> str:
    """One build per CPU capability, torch version (the library links torch's ABI) and
    kernel sources (``source_hash``)."""
    cap = capability if capability in ISA_FLAGS else "DEFAULT"
    torch_tag = re.sub(r"\W", "_", torch.__version__.split("+")[0])
    return f"{NAMESPACE}_{cap.lower()}_torch{torch_tag}_{source_hash()}"


def _build() -> Any:
    """Compile (or reuse the cached build) and load the library; return the op namespace."""
    # importing cpp_extension logs a CUDA_HOME warning on machines without CUDA; it is noise
    # for a CPU-only build
    ext_log = logging.getLogger("torch.utils.cpp_extension")
    level = ext_log.level
    ext_log.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        ext_log.setLevel(level)
    srcs = sources()
    if not srcs:
        raise FileNotFoundError(f"no kernel sources in {CSRC}")
    cap = cpu_capability()
    start = time.perf_counter()
    cpp_extension.load(
        name=library_name(cap),
        sources=[str(p) for p in srcs],
        extra_include_paths=[str(CSRC)],
        extra_cflags=build_flags(cap),
        extra_ldflags=openmp_flags(),
        with_cuda=False,
        is_python_module=False,
        verbose=False,
    )
    log.debug("fused kernels (%s) ready in %.1f s", cap, time.perf_counter() - start)
    return getattr(torch.ops, NAMESPACE)


def load_ops() -> Any:
    """``torch.ops.rnnzoo_fused``, building the library on first use (once per process).

    Raises:
        FusedBuildError: the library cannot be built or loaded; the same error is raised
            again on later calls without retrying the build.
    """
    global _ops, _error
    if _ops is not None:
        return _ops
    with _lock:
        if _ops is None and _error is None:
            try:
                _ops = _build()
            except Exception as err:  # compiler missing, ninja missing, compile error, ...
                log.debug("building the fused kernels failed", exc_info=True)
                lines = str(err).strip().splitlines()
                errors = [ln for ln in lines if "error" in ln.lower()]
                reason = (errors or lines or [type(err).__name__])[0][:300]
                _error = FusedBuildError(f"{type(err).__name__}: {reason}")
    if _error is not None:
        raise _error
    return _ops


def build_failed() -> bool:
    """True once a build was attempted in this process and failed."""
    return _error is not None


def reset() -> None:
    """Forget the outcome of the last build attempt (tests)."""
    global _ops, _error
    with _lock:
        _ops = None
        _error = None
