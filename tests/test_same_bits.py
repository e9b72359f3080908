"""The same bits on every machine: short runs of the recipe and of batch training end
at weights whose SHA-256 is written here, whatever the CPU.

The kernels fix every floating-point operation (docs/performance.md, "The same bits
on every machine"), so the hashes are not per machine: a change that alters a
single operation anywhere on these paths changes them, and so does a machine whose
arithmetic differs. The first test checks them here, on 1 and 2 threads; the
second runs the recipe, a batched run and the modern variant in subprocesses under
emulated machines: other OpenBLAS kernels, other CPUs for Numba to compile for
(each with its own cache folder), NumPy without its SIMD code, 1 to 3 threads.
Run on another developer's machine or on CI, the same test checks real machines.
"""
import json
import os
import platform
import subprocess
import sys

import pytest

from bits import RUNS, run_hash
from minilenet.kernels import threads

#: Run name -> SHA-256 of its weights (tests/bits.py), on any CPU.
HASHES = {
    "paper, batch 1, fused": "cad6461a0760244618c24dc3412aafd0f16ffa9a23268249d2b57123c613a881",
    "paper, batch 1, fused, distortions":
        "d82c468cc79b056dc66b1921c78db044444c4216c4a3e3236915ddbbeffae248",
    "paper, batch 4, fused": "5439bd0ef758e238e806398733d9040ee4e87ffbff530edeb25d2c81dd22ece0",
    # the same bits as the fused step: the layer graph runs the same kernels for 4 samples
    "paper, batch 4, layer graph":
        "5439bd0ef758e238e806398733d9040ee4e87ffbff530edeb25d2c81dd22ece0",
    "paper, batch 64, layer graph":
        "d2ed23e1d30354d7a8fe520358de0fcfa0fc63e115f449d8ef3d386c0153891a",
    "modern, batch 64": "10f4b53de59ca0589837341e7165330617104c5ff955033200787777f1447da7",
}

#: The runs the emulated machines repeat: the recipe (with and without distortions),
#: batch training, the modern variant.
MATRIX_RUNS = ("paper, batch 1, fused", "paper, batch 1, fused, distortions",
               "paper, batch 64, layer graph", "modern, batch 64")


@pytest.mark.parametrize("name", list(RUNS))
def test_weights_are_the_stated_bits_on_one_and_two_threads(tmp_path, name, numba_runs):
    before = threads.get_threads()
    try:
        found = []
        for n in (1, 2):
            threads.set_threads(n)
            found.append(run_hash(str(tmp_path / f"threads{n}"), name))
    finally:
        threads.set_threads(before)
    assert found[0] == found[1], f"{name}: 1 and 2 threads give different weights"
    print(f"{name!r}: {found[0]!r}")
    assert found[0] == HASHES[name], f"{name}: the weights are not the stated bits"


def _numpy_simd():
    """NumPy's SIMD code paths this CPU runs (what NPY_DISABLE_CPU_FEATURES can turn off)."""
    from numpy._core import _multiarray_umath as umath
    return [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]


def _host_has(*features):
    import llvmlite.binding as llvm
    host = llvm.get_host_cpu_features()
    return all(host.get(f, False) for f in features)


def _machines():
    """(label, environment) of each emulated machine."""
    machines = [(f"{n} thread{'s' if n > 1 else ''}", {"NUMBA_NUM_THREADS": str(n)})
                for n in (1, 2, 3)]
    if _numpy_simd():
        machines.append(("NumPy without " + " ".join(_numpy_simd()),
                         {"NPY_DISABLE_CPU_FEATURES": " ".join(_numpy_simd())}))
    if platform.machine().lower() in ("x86_64", "amd64"):
        machines += [(f"OpenBLAS {core}", {"OPENBLAS_CORETYPE": core})
                     for core in ("Sandybridge", "Nehalem", "Prescott")]
        cpus = ["generic", "nehalem"] + (["haswell"] if _host_has("avx2", "fma") else [])
        machines += [(f"Numba for {cpu}", {"NUMBA_CPU_NAME": cpu}) for cpu in cpus]
        machines.append(("all at once: Numba for generic, OpenBLAS Prescott, NumPy's "
                         "baseline, 3 threads",
                         {"NUMBA_CPU_NAME": "generic", "OPENBLAS_CORETYPE": "Prescott",
                          "NPY_DISABLE_CPU_FEATURES": " ".join(_numpy_simd()),
                          "NUMBA_NUM_THREADS": "3"}))
    return machines


MACHINES = _machines()


@pytest.fixture(scope="module")
def cache_dirs(tmp_path_factory):
    """A Numba cache folder per CPU Numba compiles for (machine code for one CPU
    must not be loaded for another)."""
    root = tmp_path_factory.mktemp("numba-caches")
    return lambda cpu: str(root / cpu)


@pytest.mark.slow
@pytest.mark.parametrize("label, env", MACHINES, ids=[label for label, _ in MACHINES])
def test_the_same_bits_on_emulated_machines(label, env, cache_dirs, numba_runs):
    env = {k: v for k, v in env.items() if v}
    full = dict(os.environ, **env)
    if "NUMBA_CPU_NAME" in env:
        full["NUMBA_CACHE_DIR"] = cache_dirs(env["NUMBA_CPU_NAME"])
    script = os.path.join(os.path.dirname(__file__), "bits.py")
    run = subprocess.run([sys.executable, script, *MATRIX_RUNS], env=full, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    differ = [name for name in MATRIX_RUNS if found[name] != HASHES[name]]
    assert not differ, f"{label}: other weights for {differ}: {found}"


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="OPENBLAS_CORETYPE names x86 kernels")
def test_the_emulation_catches_a_machine_dependent_product(numba_runs):
    """The matrix can fail: with NumPy's BLAS for the products (MINILENET_GEMM=blas,
    the fast path), the batched run's weights change with OpenBLAS's kernel."""
    from minilenet.kernels import blas
    if not blas.find_blas_gemm()[0]:
        pytest.skip("NumPy's BLAS is not found here: the portable products stand in")
    script = os.path.join(os.path.dirname(__file__), "bits.py")
    found = []
    for core in ("", "Prescott"):
        env = dict(os.environ, MINILENET_GEMM="blas", OPENBLAS_CORETYPE=core)
        run = subprocess.run([sys.executable, script, "paper, batch 64, layer graph"], env=env,
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stderr[-3000:]
        found.append(run.stdout.strip().splitlines()[-1])
    assert found[0] != found[1], "OpenBLAS's Prescott kernel gave the same bits as the default"
