"""KV block copiers for the swap measurements: C++ built on the spot, else a Python loop."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path


SWAP_CORE_SRC = r"""
#include <cuda_runtime.h>
#include <cstdint>
#include <vector>

// One cudaMemcpyAsync per block: the copy pattern of vLLM 0.9's swap path. mapping holds n
// (source block, destination block) pairs; returns the first CUDA error, 0 when all went in.
extern "C" int calib_copy_blocks(const char* src, char* dst, int64_t block_bytes,
                                 const int64_t* mapping, int64_t n, int to_host, void* stream) {
  const cudaMemcpyKind kind = to_host ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  for (int64_t i = 0; i < n; ++i) {
    cudaError_t err = cudaMemcpyAsync(dst + mapping[2 * i + 1] * block_bytes,
                                      src + mapping[2 * i] * block_bytes, block_bytes, kind,
                                      static_cast<cudaStream_t>(stream));
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  return 0;
}

#ifdef CALIB_BATCH_MEMCPY
// Every block of every (layer, K/V) pool in one cudaMemcpyBatchAsync call. src_bases/dst_bases
// hold the base address of each pool; the same mapping applies to all of them.
extern "C" int calib_copy_blocks_batched(const int64_t* src_bases, const int64_t* dst_bases,
                                         int64_t pools, int64_t block_bytes,
                                         const int64_t* mapping, int64_t n, void* stream) {
  const size_t count = static_cast<size_t>(pools * n);
  std::vector<void*> dsts(count);
  std::vector<const void*> srcs(count);
  std::vector<size_t> sizes(count, static_cast<size_t>(block_bytes));
  for (int64_t p = 0; p < pools; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      srcs[p * n + i] = reinterpret_cast<const char*>(src_bases[p]) + mapping[2 * i] * block_bytes;
      dsts[p * n + i] = reinterpret_cast<char*>(dst_bases[p]) + mapping[2 * i + 1] * block_bytes;
    }
  }
  cudaMemcpyAttributes attrs = {};
  attrs.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
  size_t attrs_idx = 0;
#if CUDART_VERSION >= 13000
  cudaError_t err = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), count, &attrs,
                                         &attrs_idx, 1, static_cast<cudaStream_t>(stream));
#else
  size_t fail_idx = 0;
  cudaError_t err = cudaMemcpyBatchAsync(dsts.data(), srcs.data(), sizes.data(), count, &attrs,
                                         &attrs_idx, 1, &fail_idx, static_cast<cudaStream_t>(stream));
#endif
  return static_cast<int>(err);
}
#endif
"""

# torch bindings over the C core, for load_inline (which prepends torch/extension.h)
SWAP_TORCH_BINDINGS = r"""
void copy_blocks(int64_t src, int64_t dst, int64_t block_bytes, torch::Tensor mapping,
                 bool to_host, int64_t stream) {
  TORCH_CHECK(mapping.dtype() == torch::kInt64 && mapping.dim() == 2 && mapping.size(1) == 2
              && mapping.is_contiguous() && !mapping.is_cuda(), "mapping: contiguous [n, 2] int64 on CPU");
  int err = calib_copy_blocks(reinterpret_cast<const char*>(src), reinterpret_cast<char*>(dst),
                              block_bytes, mapping.data_ptr<int64_t>(), mapping.size(0), to_host,
                              reinterpret_cast<void*>(stream));
  TORCH_CHECK(err == 0, "cudaMemcpyAsync failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}
#ifdef CALIB_BATCH_MEMCPY
void copy_blocks_batched(std::vector<int64_t> src_bases, std::vector<int64_t> dst_bases,
                         int64_t block_bytes, torch::Tensor mapping, int64_t stream) {
  TORCH_CHECK(src_bases.size() == dst_bases.size(), "one destination per source pool");
  TORCH_CHECK(mapping.dtype() == torch::kInt64 && mapping.dim() == 2 && mapping.size(1) == 2
              && mapping.is_contiguous() && !mapping.is_cuda(), "mapping: contiguous [n, 2] int64 on CPU");
  int err = calib_copy_blocks_batched(src_bases.data(), dst_bases.data(),
                                      static_cast<int64_t>(src_bases.size()), block_bytes,
                                      mapping.data_ptr<int64_t>(), mapping.size(0),
                                      reinterpret_cast<void*>(stream));
  TORCH_CHECK(err == 0, "cudaMemcpyBatchAsync failed: ", cudaGetErrorString(static_cast<cudaError_t>(err)));
}
#endif
"""


class ExtensionCopier:
    """Block copies issued from C++: a torch extension, or the same C code loaded via ctypes."""

    def __init__(self, copy_blocks, copy_blocks_batched, description: str):
        self._copy_blocks = copy_blocks
        self._copy_blocks_batched = copy_blocks_batched
        self.description = description
        self.has_batched = copy_blocks_batched is not None

    def copy_blocks(self, src, dst, mapping, to_host: bool, stream: int) -> None:
        self._copy_blocks(src.data_ptr(), dst.data_ptr(), src.stride(0) * src.element_size(),
                          mapping, to_host, stream)

    def copy_blocks_batched(self, src_bases, dst_bases, block_bytes, mapping, stream: int) -> None:
        self._copy_blocks_batched(src_bases, dst_bases, block_bytes, mapping, stream)


class LoopCopier:
    """Fallback when no C++ build works: one tensor.copy_ per block, from Python."""

    has_batched = False

    def __init__(self, why: str):
        self.description = f"Python loop of tensor.copy_ per block ({why})"

    def copy_blocks(self, src, dst, mapping, to_host: bool, stream: int) -> None:
        for s, d in mapping.tolist():
            dst[d].copy_(src[s], non_blocking=True)


def _torch_extension(torch, build_dir: Path, batched: bool):
    from torch.utils.cpp_extension import load_inline

    name = "calib_swap_batched" if batched else "calib_swap"
    defines = "#define CALIB_BATCH_MEMCPY\n" if batched else ""
    functions = ["copy_blocks"] + (["copy_blocks_batched"] if batched else [])
    module = load_inline(name=name, cpp_sources=[defines + SWAP_CORE_SRC + SWAP_TORCH_BINDINGS],
                         functions=functions, with_cuda=True, extra_cflags=["-O2"],
                         build_directory=str(build_dir), verbose=False)
    return ExtensionCopier(module.copy_blocks, getattr(module, "copy_blocks_batched", None),
                           "C++ torch extension (load_inline), one cudaMemcpyAsync per block"
                           + (", cudaMemcpyBatchAsync available" if batched else ""))


def cuda_home() -> str | None:
    """The CUDA toolkit's root. Checked by its headers: an `nvcc` on the PATH may be a wrapper
    script outside the toolkit, which misleads torch's own guess."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and Path(candidate, "include", "cuda_runtime.h").exists():
            return candidate
    return None


def prepare_build_environment(torch, device) -> None:
    """Point torch's extension builder at the toolkit and this GPU (before it is first imported)."""
    home = cuda_home()
    if home:
        os.environ.setdefault("CUDA_HOME", home)
    major, minor = torch.cuda.get_device_capability(device)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")


def _ctypes_library(build_dir: Path, batched: bool):
    """The same C core as a plain shared library, for when torch's extension build fails."""
    CUDA_HOME = cuda_home()
    if not CUDA_HOME:
        raise RuntimeError("no CUDA toolkit found")
    src = build_dir / "calib_swap.cpp"
    lib_path = build_dir / ("libcalib_swap_batched.so" if batched else "libcalib_swap.so")
    src.write_text(("#define CALIB_BATCH_MEMCPY\n" if batched else "") + SWAP_CORE_SRC)
    cmd = [shutil.which("g++") or "c++", "-O2", "-shared", "-fPIC", f"-I{CUDA_HOME}/include", str(src),
           f"-L{CUDA_HOME}/lib64", "-lcudart", "-o", str(lib_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    lib = ctypes.CDLL(str(lib_path))
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    lib.calib_copy_blocks.argtypes = [vp, vp, i64, vp, i64, ctypes.c_int, vp]

    def copy_blocks(src, dst, block_bytes, mapping, to_host, stream):
        err = lib.calib_copy_blocks(src, dst, block_bytes, mapping.data_ptr(), mapping.shape[0],
                                    int(to_host), stream)
        if err:
            raise RuntimeError(f"cudaMemcpyAsync failed with CUDA error {err}")

    batched_fn = None
    if batched:
        lib.calib_copy_blocks_batched.argtypes = [vp, vp, i64, i64, vp, i64, vp]

        def batched_fn(src_bases, dst_bases, block_bytes, mapping, stream):
            arr = ctypes.c_int64 * len(src_bases)
            err = lib.calib_copy_blocks_batched(arr(*src_bases), arr(*dst_bases), len(src_bases),
                                                block_bytes, mapping.data_ptr(), mapping.shape[0], stream)
            if err:
                raise RuntimeError(f"cudaMemcpyBatchAsync failed with CUDA error {err}")

    return ExtensionCopier(copy_blocks, batched_fn,
                           "C shared library via ctypes (torch extension build failed), one "
                           "cudaMemcpyAsync per block" + (", cudaMemcpyBatchAsync available" if batched else ""))


def build_copier(torch, build_dir: Path):
    """The best copier this machine can build, and the build errors met on the way."""
    errors = []
    attempts = (("torch extension", lambda batched: _torch_extension(torch, build_dir, batched)),
                ("ctypes library", lambda batched: _ctypes_library(build_dir, batched)))
    for label, make in attempts:
        for batched in (True, False):
            try:
                return make(batched), errors
            except Exception as exc:  # a failed build of any kind moves on to the next option
                detail = getattr(exc, "stderr", None) or str(exc)
                errors.append(f"{label} (batched={batched}): {detail.strip()[-400:]}")
    return LoopCopier("no C++ build worked: see swap_build_errors"), errors
