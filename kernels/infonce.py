"""InfoNCE (SimCLR's NT-Xent) three ways: torch reference, cache-blocked compiled torch, fused Triton.

The loss of 2N rows (this rank's two views) against 2T columns (every rank's two views; T = N on one
process), embeddings already L2-normalised, s_ik = <r_i, c_k> / tau:

    L = 1/(2N) sum_i [ log sum_{k != self(i)} exp(s_ik) - s_i,pos(i) ]        (paper eq. 1; Chen et al. eq. 1)

Row i < N is sample i of view a, whose column is self(i) = offset + i and positive pos(i) = self(i) + T;
row N + i is view b of the same sample (self = T + offset + i, positive = offset + i). The gradient is

    dL/dr_i = (1/tau 2N) sum_k (P_ik - [k = pos(i)]) c_k,     dL/dc_k = (1/tau 2N) sum_i (P_ik - [k = pos(i)]) r_i,

with P the row softmax of s with the diagonal (self) removed. Every implementation below computes
exactly that; they differ in memory and speed:

- "torch":    the logits matrix, masked, through F.cross_entropy: O(N T) memory, autograd.
- "compiled": the gradient is accumulated in the forward pass (the loss is a scalar, so backward only
              scales it), block by block so each block stays in cache, the pointwise work of a block in
              one torch.compile'd pass. One process (columns = rows): only the tiles on and above the
              diagonal of the symmetric S, two matmul-equivalents in all. Gathered: row chunks of
              (chunk, 2T), three. Memory O(block + T x D).
- "triton":   FlashAttention-style kernels: the forward streams column tiles through tl.dot with an
              online log-sum-exp that skips the diagonal and keeps only the row statistics (lse); the
              two backward kernels recompute the tiles from lse: O(N x D) memory, never O(N T).
              fp32 inputs use IEEE fp32 dots; bf16/fp16 inputs use tensor cores with fp32 accumulation.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from mlvgm.errors import InputError
from mlvgm.kernels.dispatch import NO_TRITON, resolve_impl

# --- indices --------------------------------------------------------------------------------------


def self_and_positive(n_local: int, total: int, offset: int, device=None) -> tuple[Tensor, Tensor]:
    """(self_col, pos_col), each (2N,) int64: the column of each row itself and of its positive."""
    own = torch.arange(n_local, device=device) + offset
    return torch.cat([own, own + total]), torch.cat([own + total, own])


def _check(rows: Tensor, columns: Tensor, offset: int, temperature: float) -> tuple[int, int]:
    if rows.dim() != 2 or columns.dim() != 2 or rows.shape[1] != columns.shape[1]:
        raise InputError(
            f"InfoNCE needs (2N, D) rows and (2T, D) columns, got {tuple(rows.shape)} and {tuple(columns.shape)}"
        )
    if rows.shape[0] % 2 or columns.shape[0] % 2 or rows.shape[0] == 0:
        raise InputError(f"rows and columns hold two views each: their counts must be even and > 0, got "
                         f"{rows.shape[0]} and {columns.shape[0]}")  # fmt: skip
    n_local, total = rows.shape[0] // 2, columns.shape[0] // 2
    if not 0 <= offset <= total - n_local:
        raise InputError(f"offset {offset} puts this rank's {n_local} samples outside the {total} columns")
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature}")
    return n_local, total


# --- "torch": the reference ----------------------------------------------------------------------


def nt_xent_reference(rows: Tensor, columns: Tensor, temperature: float, offset: int = 0) -> Tensor:
    """The literal formula: full logits, self masked with -inf, cross-entropy against the positive."""
    n_local, total = _check(rows, columns, offset, temperature)
    self_col, pos_col = self_and_positive(n_local, total, offset, rows.device)
    logits = rows @ columns.T / temperature  # (2N, 2T)
    logits = logits.masked_fill(F.one_hot(self_col, 2 * total).bool(), float("-inf"))
    return F.cross_entropy(logits, pos_col)


# --- "compiled": cache-blocked torch with a compiled pointwise pass -------------------------------

_CHUNK_ELEMENTS = 1 << 22  # a (chunk, 2T) fp32 block of 16 MiB stays in a CPU's L2/L3
_CHUNK_ELEMENTS_CUDA = 1 << 26  # on a GPU the blocks only bound memory (256 MiB): fewer, larger launches


def _block_logits(s: Tensor, self_col: Tensor, pos_col: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One row block: s (c, 2T) dot products -> logits with self masked, one-hot of the positives, lse."""
    cols = torch.arange(s.shape[1], device=s.device)
    logits = (s * scale).masked_fill(cols[None, :] == self_col[:, None], float("-inf"))
    positive = cols[None, :] == pos_col[:, None]  # (c, 2T)
    return logits, positive, torch.logsumexp(logits, dim=1)


def _block_loss(s: Tensor, self_col: Tensor, pos_col: Tensor, scale: Tensor) -> Tensor:
    """Per-row loss (c,) of one row block."""
    logits, positive, lse = _block_logits(s, self_col, pos_col, scale)
    return lse - torch.where(positive, logits, 0.0).sum(dim=1)


def _block_terms(s: Tensor, self_col: Tensor, pos_col: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Per-row loss (c,) of one row block and dL/ds * 2N tau, i.e. P - onehot(pos) (c, 2T)."""
    logits, positive, lse = _block_logits(s, self_col, pos_col, scale)
    loss = lse - torch.where(positive, logits, 0.0).sum(dim=1)
    return loss, torch.exp(logits - lse[:, None]) - positive.to(s.dtype)


def _symmetric_terms(s: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Whole (2N, 2N) block of one process, s = Z Z^T symmetric: per-row loss and dL/dZ's matrix G.

    dL/dZ = (1 / tau 2N) G Z with G = (P - onehot(pos)) + (P - onehot(pos))^T: the row and column
    gradients in one matmul instead of two, since rows and columns are the same samples.
    """
    m = s.shape[0]
    n = m // 2
    idx = torch.arange(m, device=s.device)
    logits = (s * scale).masked_fill(idx[:, None] == idx[None, :], float("-inf"))
    lse = torch.logsumexp(logits, dim=1)  # (2N,)
    positive = idx[None, :] == ((idx + n) % m)[:, None]  # (2N, 2N), symmetric
    pos_logit = torch.where(positive, logits, 0.0).sum(dim=1)
    p = torch.exp(logits - lse[:, None])
    return lse - pos_logit, p + p.T - 2 * positive.to(s.dtype)


# One process (columns are the rows, S = Z Z^T symmetric) with more rows than one tile: only the tiles
# on and above the diagonal are computed, twice: pass 1 sums exp over rows and (by symmetry) columns,
# pass 2 rebuilds each tile's G = P + P^T and applies it to both tiles' rows. Two matmul-equivalents of
# (2N)^2 D where the generic blocked path needs three. The row sums use the fixed shift 1/tau (every
# cosine is <= 1), which needs no running max but would underflow below tau = 0.025: there the
# generic path runs.
_TILE = 512  # CPU: a 512 x 512 fp32 tile (1 MiB) stays in L2
_TILE_CUDA = 4096  # GPU: tiles only bound memory; larger ones mean fewer launches
_MIN_TAU_FIXED_SHIFT = 0.025


def _tile_sums(s: Tensor, scale: Tensor, diagonal: bool) -> tuple[Tensor, Tensor]:
    """Row and column sums of exp((s - 1) / tau) over one tile, the diagonal (self) left out."""
    e = torch.exp((s - 1.0) * scale)
    if diagonal:
        i = torch.arange(s.shape[0], device=s.device)
        e = torch.where(i[:, None] == i[None, :], 0.0, e)
    return e.sum(dim=1), e.sum(dim=0)


def _tile_g(s: Tensor, scale: Tensor, lse_i: Tensor, lse_j: Tensor, diagonal: bool) -> Tensor:
    """G on one tile: P_ij + P_ji = exp(s_ij / tau - lse_i) + exp(s_ij / tau - lse_j), self left out."""
    logits = s * scale
    g = torch.exp(logits - lse_i[:, None]) + torch.exp(logits - lse_j[None, :])
    if diagonal:
        i = torch.arange(s.shape[0], device=s.device)
        g = torch.where(i[:, None] == i[None, :], 0.0, g)
    return g


def _symmetric_tiles(z: Tensor, scale: Tensor, need_grad: bool) -> tuple[Tensor, Tensor | None]:
    """Per-row losses (2N,) and, if asked, dL/dZ * 2N tau (2N, D) for one process's Z = cat(z_a, z_b)."""
    m = z.shape[0]
    n = m // 2
    tile = _TILE_CUDA if z.device.type == "cuda" else _TILE
    starts = range(0, m, tile)
    sums = torch.zeros(m, dtype=z.dtype, device=z.device)
    for k, a in enumerate(starts):
        for c in starts[k:]:
            row, col = _compiled(_tile_sums)(z[a : a + tile] @ z[c : c + tile].T, scale, a == c)
            sums[a : a + tile] += row
            if c != a:
                sums[c : c + tile] += col
    lse = torch.log(sums) + scale  # (2N,)
    positive = (z[:n] * z[n:]).sum(dim=1) * scale  # (N,) s_i,pos(i) / tau, the same for i and pos(i)
    losses = lse - torch.cat([positive, positive])
    if not need_grad:
        return losses, None
    d_z = torch.zeros_like(z)
    for k, a in enumerate(starts):
        z_a = z[a : a + tile]
        for c in starts[k:]:
            g = _compiled(_tile_g)(z_a @ z[c : c + tile].T, scale, lse[a : a + tile], lse[c : c + tile], a == c)
            d_z[a : a + tile].addmm_(g, z[c : c + tile])
            if c != a:
                d_z[c : c + tile].addmm_(g.T, z_a)
    d_z -= 2 * torch.cat([z[n:], z[:n]])  # the positives: -onehot(pos) from the rows and from the columns
    return losses, d_z


@functools.cache
def _compiled(fn):
    # A run has one batch size: its blocks compile once, specialised to their shapes. The temperature is
    # a 0-d tensor, not a constant, so a new tau reuses the code; a second shape turns on dynamic
    # shapes (torch's default), so tests and sweeps over many N stay within dynamo's recompile limit.
    return torch.compile(fn, fullgraph=True)


def _chunk_rows(n_rows: int, n_cols: int, device: torch.device) -> int:
    budget = _CHUNK_ELEMENTS_CUDA if device.type == "cuda" else _CHUNK_ELEMENTS
    chunks = max(1, -(-n_rows * n_cols // budget))
    return -(-n_rows // chunks)  # equal chunks, so at most two block shapes compile


class _BlockedNTXent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: Tensor, columns: Tensor, offset: int, temperature: float, grad_enabled: bool):
        n_local, total = rows.shape[0] // 2, columns.shape[0] // 2
        scale = 1.0 / temperature
        scale_t = torch.tensor(scale, dtype=rows.dtype, device=rows.device)
        self_col, pos_col = self_and_positive(n_local, total, offset, rows.device)
        need_grad = grad_enabled and any(ctx.needs_input_grad[:2])  # (needs_input_grad ignores no_grad)
        chunk = _chunk_rows(rows.shape[0], columns.shape[0], rows.device)
        factor = scale / rows.shape[0]
        if rows is columns and offset == 0:  # one process: S is symmetric
            if need_grad and rows.shape[0] <= _TILE:  # one small block: G whole, one gradient matmul
                losses, g = _compiled(_symmetric_terms)(rows @ rows.T, scale_t)
                ctx.save_for_backward(torch.mm(g, rows).mul_(factor), None)
                return losses.mean()
            if temperature >= _MIN_TAU_FIXED_SHIFT:
                losses, d_z = _symmetric_tiles(rows, scale_t, need_grad)
                if need_grad:
                    ctx.save_for_backward(d_z.mul_(factor), None)
                return losses.mean()
        losses = rows.new_empty(rows.shape[0])
        d_rows = torch.empty_like(rows) if need_grad else None
        d_cols = torch.zeros_like(columns) if need_grad else None
        for a in range(0, rows.shape[0], chunk):
            b = min(a + chunk, rows.shape[0])
            s = rows[a:b] @ columns.T  # (c, 2T)
            if need_grad:
                losses[a:b], p = _compiled(_block_terms)(s, self_col[a:b], pos_col[a:b], scale_t)
                torch.mm(p, columns, out=d_rows[a:b])  # (c, D)
                d_cols.addmm_(p.T, rows[a:b])  # (2T, D)
            else:
                losses[a:b] = _compiled(_block_loss)(s, self_col[a:b], pos_col[a:b], scale_t)
        if need_grad:
            ctx.save_for_backward(d_rows.mul_(factor), d_cols.mul_(factor))
        return losses.mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        d_rows, d_cols = ctx.saved_tensors  # d_cols is None when d_rows holds both (symmetric form)
        return grad * d_rows, None if d_cols is None else grad * d_cols, None, None, None


# --- "triton": fused kernels ----------------------------------------------------------------------


try:  # a CPU-only torch may come without triton: then only "torch" and "compiled" exist
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None

if triton is not None:

    @triton.jit
    def dot_tile(R, C, rows, cols, row_ok, col_ok, dim, stride_r, stride_c,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, IEEE: tl.constexpr):  # fmt: skip
        """(BLOCK_M, BLOCK_N) fp32 tile of R[rows] @ C[cols]^T, accumulated over D in BLOCK_D slices."""
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for d0 in range(0, dim, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            d_ok = d < dim
            r = tl.load(R + rows[:, None] * stride_r + d[None, :], mask=row_ok[:, None] & d_ok[None, :], other=0.0)
            c = tl.load(C + cols[:, None] * stride_c + d[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
            if IEEE:
                acc = tl.dot(r, tl.trans(c), acc, input_precision="ieee")
            else:
                acc = tl.dot(r, tl.trans(c), acc)
        return acc

    @triton.jit
    def row_columns(rows, n_local, total, offset):
        first = rows < n_local
        self_col = tl.where(first, offset + rows, total + offset + rows - n_local)
        pos_col = tl.where(first, self_col + total, self_col - total)
        return self_col, pos_col

    @triton.jit
    def forward_kernel(R, C, LOSS, LSE, n_rows, n_cols, n_local, total, offset, dim, stride_r, stride_c, scale,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                       IEEE: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < n_rows
        self_col, pos_col = row_columns(rows, n_local, total, offset)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max of the row
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp(s - m_i)
        pos = tl.zeros([BLOCK_M], dtype=tl.float32)  # the positive logit
        for start in range(0, n_cols, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_ok = cols < n_cols
            s = dot_tile(R, C, rows, cols, row_ok, col_ok, dim, stride_r, stride_c, BLOCK_M, BLOCK_N, BLOCK_D, IEEE)
            s = s * scale
            pos += tl.sum(tl.where(cols[None, :] == pos_col[:, None], s, 0.0), axis=1)
            s = tl.where((cols[None, :] == self_col[:, None]) | (~col_ok[None, :]), float("-inf"), s)
            m_new = tl.maximum(m_i, tl.max(s, axis=1))  # finite: every tile a row sees has a non-self column
            l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(s - m_new[:, None]), axis=1)
            m_i = m_new
        lse = m_i + tl.log(l_i)
        tl.store(LSE + rows, lse, mask=row_ok)
        tl.store(LOSS + rows, lse - pos, mask=row_ok)

    @triton.jit
    def d_rows_kernel(R, C, LSE, GRAD, DR, n_rows, n_cols, n_local, total, offset, dim, stride_r, stride_c,
                      stride_dr, scale, factor, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr, IEEE: tl.constexpr):  # fmt: skip
        """dR[rows, d-slice] = grad * factor * sum_k (P_ik - [k = pos(i)]) C[k, d-slice]."""
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        row_ok = rows < n_rows
        self_col, pos_col = row_columns(rows, n_local, total, offset)
        lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
        do = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
        do_ok = do < dim
        acc = tl.zeros([BLOCK_M, BLOCK_DO], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK_N):
            cols = start + tl.arange(0, BLOCK_N)
            col_ok = cols < n_cols
            s = dot_tile(R, C, rows, cols, row_ok, col_ok, dim, stride_r, stride_c, BLOCK_M, BLOCK_N, BLOCK_D, IEEE)
            p = tl.exp(s * scale - lse[:, None])
            p = tl.where((cols[None, :] == self_col[:, None]) | (~col_ok[None, :]), 0.0, p)
            p = p - tl.where(cols[None, :] == pos_col[:, None], 1.0, 0.0)
            c = tl.load(C + cols[:, None] * stride_c + do[None, :], mask=col_ok[:, None] & do_ok[None, :], other=0.0)
            if IEEE:
                acc = tl.dot(p, c, acc, input_precision="ieee")
            else:
                acc = tl.dot(p.to(c.dtype), c, acc)
        g = tl.load(GRAD)
        out = DR + rows[:, None] * stride_dr + do[None, :]
        tl.store(out, (acc * (g * factor)).to(DR.dtype.element_ty), mask=row_ok[:, None] & do_ok[None, :])

    @triton.jit
    def d_cols_kernel(R, C, LSE, GRAD, DC, n_rows, n_cols, n_local, total, offset, dim, stride_r, stride_c,
                      stride_dc, scale, factor, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      BLOCK_D: tl.constexpr, BLOCK_DO: tl.constexpr, IEEE: tl.constexpr):  # fmt: skip
        """dC[cols, d-slice] = grad * factor * sum_i (P_ik - [k = pos(i)]) R[i, d-slice]."""
        cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        col_ok = cols < n_cols
        do = tl.program_id(1) * BLOCK_DO + tl.arange(0, BLOCK_DO)
        do_ok = do < dim
        acc = tl.zeros([BLOCK_N, BLOCK_DO], dtype=tl.float32)
        for start in range(0, n_rows, BLOCK_M):
            rows = start + tl.arange(0, BLOCK_M)
            row_ok = rows < n_rows
            self_col, pos_col = row_columns(rows, n_local, total, offset)
            lse = tl.load(LSE + rows, mask=row_ok, other=0.0)
            s = dot_tile(R, C, rows, cols, row_ok, col_ok, dim, stride_r, stride_c, BLOCK_M, BLOCK_N, BLOCK_D, IEEE)
            p = tl.exp(s * scale - lse[:, None])
            dead = (cols[None, :] == self_col[:, None]) | (~col_ok[None, :]) | (~row_ok[:, None])
            p = tl.where(dead, 0.0, p)
            p = p - tl.where((cols[None, :] == pos_col[:, None]) & row_ok[:, None], 1.0, 0.0)
            r = tl.load(R + rows[:, None] * stride_r + do[None, :], mask=row_ok[:, None] & do_ok[None, :], other=0.0)
            if IEEE:
                acc = tl.dot(tl.trans(p), r, acc, input_precision="ieee")
            else:
                acc = tl.dot(tl.trans(p).to(r.dtype), r, acc)
        g = tl.load(GRAD)
        out = DC + cols[:, None] * stride_dc + do[None, :]
        tl.store(out, (acc * (g * factor)).to(DC.dtype.element_ty), mask=col_ok[:, None] & do_ok[None, :])


def _triton_kernels():
    if triton is None:
        raise InputError(NO_TRITON)
    return triton, forward_kernel, d_rows_kernel, d_cols_kernel


def _blocks(dim: int, device: torch.device) -> dict[str, int]:
    """Tile sizes. The interpreter gets small tiles, so small test shapes still cross tile edges."""
    small = device.type != "cuda"
    pow2 = 1 << max(4, (dim - 1).bit_length())  # >= 16: tl.dot's minimum
    return {
        "BLOCK_M": 32 if small else 64,
        "BLOCK_N": 32 if small else 64,
        "BLOCK_D": min(pow2, 32 if small else 64),
        "BLOCK_DO": min(pow2, 64 if small else 128),
    }


class _TritonNTXent(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: Tensor, columns: Tensor, offset: int, temperature: float):
        triton, forward_kernel, _, _ = _triton_kernels()
        rows, columns = rows.contiguous(), columns.contiguous()
        n_rows, n_cols, dim = rows.shape[0], columns.shape[0], rows.shape[1]
        blocks = _blocks(dim, rows.device)
        losses = torch.empty(n_rows, device=rows.device, dtype=torch.float32)
        lse = torch.empty_like(losses)
        ieee = rows.dtype == torch.float32
        forward_kernel[(triton.cdiv(n_rows, blocks["BLOCK_M"]),)](
            rows, columns, losses, lse, n_rows, n_cols, n_rows // 2, n_cols // 2, offset, dim,
            rows.stride(0), columns.stride(0), 1.0 / temperature,
            BLOCK_M=blocks["BLOCK_M"], BLOCK_N=blocks["BLOCK_N"], BLOCK_D=blocks["BLOCK_D"], IEEE=ieee,
        )  # fmt: skip
        ctx.save_for_backward(rows, columns, lse)
        ctx.offset, ctx.temperature = offset, temperature
        return losses.mean()

    @staticmethod
    def backward(ctx, grad: Tensor):
        triton, _, d_rows_kernel, d_cols_kernel = _triton_kernels()
        rows, columns, lse = ctx.saved_tensors
        n_rows, n_cols, dim = rows.shape[0], columns.shape[0], rows.shape[1]
        blocks = _blocks(dim, rows.device)
        scale = 1.0 / ctx.temperature
        common = dict(
            n_rows=n_rows, n_cols=n_cols, n_local=n_rows // 2, total=n_cols // 2, offset=ctx.offset, dim=dim,
            stride_r=rows.stride(0), stride_c=columns.stride(0), scale=scale, factor=scale / n_rows,
            IEEE=rows.dtype == torch.float32, **blocks,
        )  # fmt: skip
        grad = grad.to(torch.float32).reshape(1).contiguous()
        d_rows = d_cols = None
        d_slices = triton.cdiv(dim, blocks["BLOCK_DO"])
        if ctx.needs_input_grad[0]:
            d_rows = torch.empty_like(rows)
            grid = (triton.cdiv(n_rows, blocks["BLOCK_M"]), d_slices)
            d_rows_kernel[grid](rows, columns, lse, grad, d_rows, stride_dr=d_rows.stride(0), **common)
        if ctx.needs_input_grad[1]:
            d_cols = torch.empty_like(columns)
            grid = (triton.cdiv(n_cols, blocks["BLOCK_N"]), d_slices)
            d_cols_kernel[grid](rows, columns, lse, grad, d_cols, stride_dc=d_cols.stride(0), **common)
        return d_rows, d_cols, None, None


# --- public ---------------------------------------------------------------------------------------


def nt_xent(
    rows: Tensor,  # (2N, D) L2-normalised: this rank's view-a embeddings, then its view-b embeddings
    columns: Tensor,  # (2T, D) L2-normalised: all ranks' view a, then all ranks' view b (`rows` on one process)
    temperature: float,  # tau
    *,
    offset: int = 0,  # index of this rank's first sample among the T (rank x N when gathered)
    impl: str = "auto",  # "auto" | "torch" | "compiled" | "triton"
) -> Tensor:
    """Mean NT-Xent of the 2N rows against the 2T columns (module docstring), a scalar in the rows' dtype
    (float32 for half-precision rows). Triton computes float64 inputs in float32."""
    _check(rows, columns, offset, temperature)
    impl = resolve_impl("infonce", impl, rows.device)
    # Autocast would run the similarity matmul in bf16; the loss is computed in the inputs' precision
    # (fp32, or bf16 dots with fp32 accumulation in the Triton kernels), whatever the caller's context.
    with torch.autocast(rows.device.type, enabled=False):
        if impl == "torch":
            return nt_xent_reference(rows, columns, temperature, offset)
        if impl == "compiled":
            return _BlockedNTXent.apply(rows, columns, offset, float(temperature), torch.is_grad_enabled())
        if rows.dtype == torch.float64:  # the kernels accumulate in fp32: compute there, answer in fp64
            same = columns is rows
            rows = rows.float()
            columns = rows if same else columns.float()
            return _TritonNTXent.apply(rows, columns, offset, float(temperature)).double()
        return _TritonNTXent.apply(rows, columns, offset, float(temperature))


def infonce(
    z_a: Tensor,  # (N, D) embeddings of the first views
    z_b: Tensor,  # (N, D) embeddings of the second views; row i of z_a and z_b is a positive pair
    temperature: float = 0.1,  # tau
    *,
    impl: str = "auto",  # "auto" | "torch" | "compiled" | "triton"
) -> Tensor:
    """NT-Xent of one process's batch: `mlvgm.losses.info_nce` without the gathering across ranks.

    Embeddings are L2-normalised in float32; bf16/fp16 inputs stay in their dtype for the Triton dots
    (fp32 accumulation) and are computed in float32 by the torch paths.
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise InputError(f"infonce needs two (N, D) embeddings of the same shape, got {tuple(z_a.shape)} and "
                         f"{tuple(z_b.shape)}")  # fmt: skip
    rows = normalized_rows(z_a, z_b, resolve_impl("infonce", impl, z_a.device))
    return nt_xent(rows, rows, temperature, impl=impl)


def normalized_rows(z_a: Tensor, z_b: Tensor, resolved_impl: str) -> Tensor:
    """cat(z_a, z_b) L2-normalised in float32; half-precision kept for Triton's tensor-core dots."""
    dtype = z_a.dtype
    rows = torch.cat([F.normalize(z_a.float() if dtype != torch.float64 else z_a, dim=1),
                      F.normalize(z_b.float() if dtype != torch.float64 else z_b, dim=1)])  # fmt: skip
    if resolved_impl == "triton" and dtype in (torch.float16, torch.bfloat16):
        rows = rows.to(dtype)
    return rows
