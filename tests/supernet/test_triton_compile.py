"""The Triton kernels compile for an H100 (sm_90) here, without a GPU.

The interpreter tests (``test_triton_mix.py``, ``test_triton_batch_norm.py``,
``test_triton_depthwise.py``) check what the kernels compute; the interpreter
runs them as Python and never type-checks or lowers them, so a kernel can pass there and still
fail to compile on a GPU. This compiles every kernel variant to a cubin with Triton's own
compiler and ``ptxas`` for a CUDA target, in a subprocess without ``TRITON_INTERPRET``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.helpers.paths import ROOT

pytest.importorskip("triton", reason="triton not installed")


SCRIPT = r"""
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from supernet.kernels import triton_mix as tm

xs = [f"x{i}" for i in range(16)]
gxs = [f"gx{i}" for i in range(16)]
ss = [f"s{i}" for i in range(16)]
done = 0
for dtype, int_t in (("*fp32", "i32"), ("*bf16", "i64")):
    for strided in (False, True):
        for K, has_acc in ((7, False), (16, True)):
            fwd = {"dst_ptr": dtype, "acc_ptr": "*fp32", "w_ptr": "*fp32"}
            fwd.update({x: dtype for x in xs})
            fwd.update({s: int_t for s in ss})
            fwd.update(n_elements=int_t, inner=int_t, w_start=int_t)
            fwd.update(K="constexpr", HAS_ACC="constexpr", STRIDED="constexpr", BLOCK_SIZE="constexpr")
            consts = {"K": K, "HAS_ACC": has_acc, "STRIDED": strided, "BLOCK_SIZE": 1024}
            triton.compile(ASTSource(tm._mix_fwd_kernel, fwd, consts), target=GPUTarget("cuda", 90, 32))
            bwd = {"g_ptr": dtype, "w_ptr": "*fp32", "partial_ptr": "*fp32"}
            bwd.update({x: dtype for x in xs})
            bwd.update({x: dtype for x in gxs})
            bwd.update({s: int_t for s in ss})
            bwd.update(n_elements=int_t, inner=int_t, w_start=int_t, num_blocks=int_t)
            bwd.update(K="constexpr", STRIDED="constexpr", BLOCK_SIZE="constexpr")
            consts = {"K": K, "STRIDED": strided, "BLOCK_SIZE": 1024}
            triton.compile(ASTSource(tm._mix_bwd_kernel, bwd, consts), target=GPUTarget("cuda", 90, 32))
            done += 2
print("compiled", done)

from supernet.kernels import triton_batch_norm as tb

ints = dict(C="i32", M="i32", chunk="i32", S="i32")
target = GPUTarget("cuda", 90, 32)


def compile_for_sm90(kernel, sig, consts):
    # What Triton's launcher specializes at run time: 16-aligned pointers, sizes divisible by 16
    names = list(sig)
    aligned = [n for n in names if sig[n].startswith("*") or n in ("M", "chunk")]
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in aligned}
    return triton.compile(ASTSource(kernel, sig, consts, attrs), target=target)


done = 0
for dtype in ("*fp32", "*bf16"):
    sig = dict(x_ptr=dtype, count_ptr="*fp32", mean_ptr="*fp32", m2_ptr="*fp32", **ints)
    sig.update(HW="constexpr", BLOCK_SIZE="constexpr")
    for HW in (1024, 64, 561):  # block within a plane; planes within a block; neither
        k = compile_for_sm90(tb._stats_kernel, sig, {"HW": HW, "BLOCK_SIZE": 1024})
        print("stats", dtype, HW, "vector loads" if "ld.global.v4" in k.asm["ptx"] else "scalar")
    sig = dict(x_ptr=dtype, dy_ptr=dtype, mean_ptr="*fp32", rstd_ptr="*fp32", sum_dy_ptr="*fp32",
               sum_dyx_ptr="*fp32", **ints, HW="constexpr", BLOCK_SIZE="constexpr")
    compile_for_sm90(tb._grad_sums_kernel, sig, {"HW": 1024, "BLOCK_SIZE": 1024})
    done += 4
    for flags in ((False, False), (True, True)):
        sig = dict(x_ptr=dtype, y_ptr=dtype, count_ptr="*fp32", part_mean_ptr="*fp32",
                   m2_ptr="*fp32", mean_ptr="*fp32", rstd_ptr="*fp32", running_mean_ptr="*fp32",
                   running_var_ptr="*fp32", w_ptr="*fp32", b_ptr="*fp32", **ints,
                   momentum="fp32", eps="fp32", HW="constexpr", S_PAD="constexpr",
                   HAS_RUNNING="constexpr", HAS_AFFINE="constexpr", BLOCK_SIZE="constexpr")
        consts = {"HW": 561, "S_PAD": 64, "HAS_RUNNING": flags[0], "HAS_AFFINE": flags[1],
                  "BLOCK_SIZE": 1024}
        compile_for_sm90(tb._normalize_kernel, sig, consts)
        sig = dict(x_ptr=dtype, dy_ptr=dtype, dx_ptr=dtype, mean_ptr="*fp32", rstd_ptr="*fp32",
                   sum_dy_ptr="*fp32", sum_dyx_ptr="*fp32", w_ptr="*fp32", dw_ptr="*fp32",
                   db_ptr="*fp32", **ints, HW="constexpr", S_PAD="constexpr",
                   HAS_AFFINE="constexpr", BLOCK_SIZE="constexpr")
        consts = {"HW": 64, "S_PAD": 64, "HAS_AFFINE": flags[1], "BLOCK_SIZE": 1024}
        compile_for_sm90(tb._grad_input_kernel, sig, consts)
        done += 2
print("batch norm compiled", done)

from supernet.kernels import triton_depthwise as td

done = 0
for dtype in ("*fp32", "*bf16"):
    # sep_conv_5x5 (32x32), sep_conv_3x3 at stride 2 (32x32 -> 16x16), dil_conv_5x5 (8x8)
    for C, H, HO, K, S, PAD, DIL in ((128, 32, 32, 5, 1, 2, 1), (64, 32, 16, 3, 2, 1, 1),
                                     (512, 8, 8, 5, 1, 4, 2)):
        geo = dict(C=C, H=H, W=H, HO=HO, WO=HO, K=K, STRIDE=S, PAD=PAD, DIL=DIL)
        const = {k: "constexpr" for k in (*geo, "BLOCK_H", "BLOCK_W")}
        block_h, block_w = td._tile(HO, 10**6)
        sig = dict(x_ptr=dtype, w_ptr=dtype, y_ptr=dtype, rows="i32", **const)
        compile_for_sm90(td._dw_forward_kernel, sig, {**geo, "BLOCK_H": block_h, "BLOCK_W": block_w})
        sig = dict(dy_ptr=dtype, w_ptr=dtype, dx_ptr=dtype, rows="i32", **const)
        block_h, block_w = td._tile(H, 10**6)
        compile_for_sm90(td._dw_input_grad_kernel, sig, {**geo, "BLOCK_H": block_h, "BLOCK_W": block_w})
        sig = dict(x_ptr=dtype, dy_ptr=dtype, partial_ptr="*fp32", chunk_rows="i32",
                   total_rows="i32", S="i32", **const, TAPS="constexpr")
        block_h, block_w = td._tile(HO, 10**6, td.WEIGHT_GRAD_TILE)
        taps = triton.next_power_of_2(K * K)
        consts = {**geo, "TAPS": taps, "BLOCK_H": block_h, "BLOCK_W": block_w}
        compile_for_sm90(td._dw_weight_grad_kernel, sig, consts)
        done += 3
print("depthwise compiled", done)
"""


@pytest.mark.slow  # 16 s of compiling for a GPU this machine lacks
def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode and "ptxas" in proc.stderr and "not found" in proc.stderr.lower():
        pytest.skip("Triton's CUDA toolchain (ptxas) is not available")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled 16" in proc.stdout
    assert "batch norm compiled 16" in proc.stdout
    assert "depthwise compiled 18" in proc.stdout
    # The supernet's planes (32x32, 16x16, 8x8) divide or are divided by the block: 128-bit loads
    for dtype in ("*fp32", "*bf16"):
        for HW in (1024, 64):
            assert f"stats {dtype} {HW} vector loads" in proc.stdout, proc.stdout
