"""InfoNCE kernels (kernels/infonce.py): the torch reference against a literal float64 loop, its
gradients by finite differences, the compiled and Triton paths against the reference (values and
gradients, gathered layout, row chunks, tile edges), their saved memory, and the dispatch's errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mlvgm.kernels.dispatch as dispatch
import mlvgm.kernels.infonce as infonce_mod
from mlvgm.errors import InputError
from mlvgm.kernels.infonce import infonce, nt_xent, nt_xent_reference

# One temperature for every compiled call: torch.compile specialises on it, so each new value is a new graph.
TAU = 0.2
# An upstream gradient != 1, so the backward's use of the incoming gradient is checked too.
WEIGHT = 1.7
# Interpreter tests run on CPU tensors here and on the GPU where there is one (tests/mlvgm/test_streams.py).
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
KERNELS = ["compiled", pytest.param("triton", marks=pytest.mark.interpret)]
SHAPES = [(1, 8), (3, 64), (33, 96), (130, 64)]  # N=1: the positive is the only other column; 33, 130 cross tiles


@pytest.fixture(autouse=True, scope="module")
def _empty_compile_caches():
    """This module compiles many block shapes: it starts and leaves with empty compile caches, so what it
    compiles (static or dynamic-shape graphs) does not change what other modules exercise."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def device_of(impl: str) -> str:
    return TRITON_DEVICE if impl == "triton" else "cpu"


def nt_xent_literal(rows: np.ndarray, columns: np.ndarray, tau: float, offset: int = 0) -> float:
    """-log(exp(s_i,pos) / sum_{k != self} exp(s_ik)), one row and one column at a time, mean over rows."""
    n, t = len(rows) // 2, len(columns) // 2
    total = 0.0
    for i in range(2 * n):
        own = offset + i if i < n else t + offset + (i - n)
        positive = own + t if i < n else own - t
        denominator = 0.0
        for k in range(2 * t):
            if k != own:
                denominator += math.exp(float(np.dot(rows[i], columns[k])) / tau)
        total += -math.log(math.exp(float(np.dot(rows[i], columns[positive])) / tau) / denominator)
    return total / (2 * n)


def embeddings(n: int, d: int, seed: int, dtype=torch.float32, device="cpu") -> list[torch.Tensor]:
    """z_a, z_b: un-normalised (N, D) leaves that require grad."""
    g = torch.Generator().manual_seed(seed)
    return [(3 * torch.randn(n, d, generator=g, dtype=dtype)).to(device).requires_grad_() for _ in range(2)]


def gathered(n: int, t: int, offset: int, d: int, seed: int, dtype=torch.float64, device="cpu") -> list[torch.Tensor]:
    """rows (2N, D), columns (2T, D), unit vectors, separate leaves; rows are the columns at this rank's places."""
    g = torch.Generator().manual_seed(seed)
    columns = F.normalize(torch.randn(2 * t, d, generator=g, dtype=torch.float64), dim=1)
    rows = torch.cat([columns[offset : offset + n], columns[t + offset : t + offset + n]])
    return [x.to(device, dtype).requires_grad_() for x in (rows, columns)]


def loss_and_grads(fn, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    loss = fn(*inputs)
    return loss.detach(), torch.autograd.grad(loss * WEIGHT, inputs)


def float64_leaves(inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    return [x.detach().double().requires_grad_() for x in inputs]


def assert_matches(actual, expected, rtol: float = 1e-5) -> None:
    """Loss within rtol (atol 1e-6); each gradient within rtol of its entries and of its largest entry."""
    (loss, grads), (ref_loss, ref_grads) = actual, expected
    torch.testing.assert_close(loss.double(), ref_loss, rtol=rtol, atol=1e-6)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad.double(), ref, rtol=rtol, atol=rtol * float(ref.abs().max()))


# -- the reference against the literal loop ---------------------------------------------------------


@pytest.mark.parametrize(("n", "d", "tau"), [(1, 3, 0.1), (4, 8, 0.5), (9, 16, 0.07)])
def test_single_process_reference_matches_the_literal_loop(n, d, tau):
    """infonce(impl="torch") normalises z_a, z_b and excludes each row's own column (for N=1 the loss is 0)."""
    z_a, z_b = (z.detach() for z in embeddings(n, d, seed=n, dtype=torch.float64))
    rows = F.normalize(torch.cat([z_a, z_b]), dim=1)
    literal = nt_xent_literal(rows.numpy(), rows.numpy(), tau)
    assert float(infonce(z_a, z_b, tau, impl="torch")) == pytest.approx(literal, rel=1e-10, abs=1e-12)
    assert float(nt_xent_reference(rows, rows, tau)) == pytest.approx(literal, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "t", "offset", "d", "tau"),
    [(1, 3, 2, 5, 0.3), (3, 7, 0, 4, 0.07), (3, 7, 2, 4, 0.5), (2, 6, 4, 16, 1.0)],
)
def test_gathered_reference_matches_the_literal_loop(n, t, offset, d, tau):
    """2N rows against 2T columns: row i<N has self offset+i and positive offset+i+T, row N+i the reverse."""
    rows, columns = (x.detach() for x in gathered(n, t, offset, d, seed=offset + t))
    literal = nt_xent_literal(rows.numpy(), columns.numpy(), tau, offset)
    assert float(nt_xent_reference(rows, columns, tau, offset)) == pytest.approx(literal, rel=1e-10)
    assert float(nt_xent(rows, columns, tau, offset=offset, impl="torch")) == pytest.approx(literal, rel=1e-10)


def test_reference_gradients_by_finite_differences():
    """gradcheck in float64: one process (columns is rows) and gathered (separate leaves, offset > 0)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: nt_xent_reference(r, r, 0.5), (x,))
    rows, columns = gathered(2, 5, 2, 3, seed=6)
    assert torch.autograd.gradcheck(lambda r, c: nt_xent_reference(r, c, 0.5, offset=2), (rows, columns))


# -- compiled and Triton against the reference ------------------------------------------------------


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize(("n", "d"), SHAPES)
def test_kernel_matches_the_reference(impl, n, d):
    """fp32 loss and dL/dz_a, dL/dz_b against the float64 reference on the same embeddings."""
    z = embeddings(n, d, seed=100 + n, device=device_of(impl))
    actual = loss_and_grads(lambda a, b: infonce(a, b, TAU, impl=impl), z)
    expected = loss_and_grads(lambda a, b: infonce(a, b, TAU, impl="torch"), float64_leaves(z))
    assert_matches(actual, expected)


@pytest.mark.parametrize("impl", KERNELS)
def test_kernel_matches_the_reference_gathered(impl):
    """Rows at offset 9 of 2T=40 columns (two column tiles for Triton), gradients to rows and columns;
    D=40 leaves the last D slice of every tile half empty."""
    inputs = gathered(5, 20, 9, 40, seed=7, dtype=torch.float32, device=device_of(impl))
    actual = loss_and_grads(lambda r, c: nt_xent(r, c, TAU, offset=9, impl=impl), inputs)
    expected = loss_and_grads(lambda r, c: nt_xent_reference(r, c, TAU, offset=9), float64_leaves(inputs))
    assert_matches(actual, expected)


def recorded_blocks(monkeypatch) -> list[tuple[int, ...]]:
    """Spy on the compiled block functions: the shapes of the similarity blocks they are handed."""
    compiled, blocks = infonce_mod._compiled, []

    def recording(fn):
        def run(s, *args):
            blocks.append(tuple(s.shape))
            return compiled(fn)(s, *args)

        return run

    monkeypatch.setattr(infonce_mod, "_compiled", recording)
    return blocks


@pytest.mark.parametrize("t", [7, 9], ids=["same-size", "gathered"])
def test_compiled_over_several_row_chunks(monkeypatch, t):
    """A 64-element block budget splits 14 rows (x 14 or 18 columns) into blocks of 4, 4, 4 and 2 rows:
    each block's self/positive columns and its share of dL/dcolumns must still add up to the whole.
    (Separate row and column tensors: the generic path, as a gathered run takes it.)"""
    monkeypatch.setattr(infonce_mod, "_CHUNK_ELEMENTS", 64)
    blocks = recorded_blocks(monkeypatch)
    inputs = gathered(7, t, 0 if t == 7 else 1, 16, seed=8, dtype=torch.float32)
    offset = 0 if t == 7 else 1
    actual = loss_and_grads(lambda r, c: nt_xent(r, c, TAU, offset=offset, impl="compiled"), inputs)
    expected = loss_and_grads(lambda r, c: nt_xent_reference(r, c, TAU, offset=offset), float64_leaves(inputs))
    assert [b[0] for b in blocks] == [4, 4, 4, 2]
    assert_matches(actual, expected)


@pytest.mark.parametrize("tau", [TAU, 1.0])
def test_compiled_symmetric_tiles(monkeypatch, tau):
    """One process, tiles of 4 over 14 rows: the 10 tiles on and above the diagonal, once for the row
    sums and once for G, must give the reference's loss and gradients (off-diagonal tiles feed both
    their rows and their columns; the last tiles are 2 wide)."""
    monkeypatch.setattr(infonce_mod, "_TILE", 4)
    blocks = recorded_blocks(monkeypatch)
    z = embeddings(7, 16, seed=8)
    actual = loss_and_grads(lambda a, b: infonce(a, b, tau, impl="compiled"), z)
    expected = loss_and_grads(lambda a, b: infonce(a, b, tau, impl="torch"), float64_leaves(z))
    assert len(blocks) == 20 and blocks.count((4, 2)) == 6 and blocks.count((2, 2)) == 2
    assert_matches(actual, expected)
    with torch.no_grad():  # the loss alone: the first pass only
        blocks.clear()
        torch.testing.assert_close(infonce(*z, tau, impl="compiled"), expected[0].float(), rtol=1e-5, atol=1e-6)
        assert len(blocks) == 10


def test_compiled_small_temperature_takes_the_running_max_path(monkeypatch):
    """Below tau = 0.025 the fixed shift 1/tau could underflow: the row-chunk path (running logsumexp) runs."""
    monkeypatch.setattr(infonce_mod, "_TILE", 4)
    blocks = recorded_blocks(monkeypatch)
    z = embeddings(7, 16, seed=3)
    actual = loss_and_grads(lambda a, b: infonce(a, b, 0.01, impl="compiled"), z)
    expected = loss_and_grads(lambda a, b: infonce(a, b, 0.01, impl="torch"), float64_leaves(z))
    assert blocks == [(14, 14)]
    assert_matches(actual, expected)


def test_compiled_forward_without_gradients():
    """Inputs that need no gradient take the loss-only pass (no dL/ds blocks); it equals the reference."""
    z_a, z_b = (z.detach() for z in embeddings(33, 96, seed=9))
    with torch.no_grad():
        loss = infonce(z_a, z_b, TAU, impl="compiled")
    assert not loss.requires_grad
    expected = infonce(z_a.double(), z_b.double(), TAU, impl="torch")
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["one-process", "gathered"])
def test_compiled_in_float64(layout):
    """float64 stays float64 (columns-is-rows form and the blocked pass): the reference's value to
    1e-12, and gradcheck."""
    if layout == "one-process":
        inputs = embeddings(3, 4, seed=10, dtype=torch.float64)

        def loss(a, b, impl):
            return infonce(a, b, TAU, impl=impl)
    else:
        inputs = gathered(2, 3, 1, 4, seed=10)

        def loss(r, c, impl):
            return nt_xent(r, c, TAU, offset=1, impl=impl)

    compiled = loss(*inputs, "compiled")
    assert compiled.dtype == torch.float64
    assert float(compiled.detach()) == pytest.approx(float(loss(*inputs, "torch").detach()), rel=1e-12)
    assert torch.autograd.gradcheck(lambda x, y: loss(x, y, "compiled"), inputs)


# -- memory -----------------------------------------------------------------------------------------


def saved_elements(impl: str, n: int, d: int, columns_is_rows: bool = True) -> int:
    """Elements autograd keeps for backward of nt_xent on 2N rows of D (2N columns: the rows themselves,
    or a separate tensor as when gathered)."""
    rows = torch.randn(2 * n, d, generator=torch.Generator().manual_seed(11))
    rows = F.normalize(rows, dim=1).to(device_of(impl)).requires_grad_()
    columns = rows if columns_is_rows else rows.detach().clone().requires_grad_()
    count = 0

    def pack(t):
        nonlocal count
        count += t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        nt_xent(rows, columns, TAU, impl=impl)
    return count


@pytest.mark.parametrize("columns_is_rows", [True, False], ids=["columns-is-rows", "separate-columns"])
@pytest.mark.parametrize("impl", KERNELS)
def test_kernels_save_linear_memory(impl, columns_is_rows):
    """At N=130, D=8 the kernels keep O(N D + N) for backward (a few (2N, D) tensors and one 2N vector),
    far below the (2N)^2 logits."""
    n, d = 130, 8
    assert saved_elements(impl, n, d, columns_is_rows) <= 4 * (2 * n * d) + 2 * n  # 8580 vs (2N)^2 = 67600


@pytest.mark.parametrize("columns_is_rows", [True, False], ids=["columns-is-rows", "separate-columns"])
def test_reference_saves_the_logits(columns_is_rows):
    """The counter sees the reference's (2N, 2T) graph: the bound above would catch an O(N^2) regression."""
    assert saved_elements("torch", 130, 8, columns_is_rows) >= (2 * 130) ** 2


# -- dispatch and input checks ----------------------------------------------------------------------


def test_unknown_impl_names_the_choices():
    z_a, z_b = torch.randn(2, 3), torch.randn(2, 3)
    with pytest.raises(InputError, match="'bogus' for infonce: choose one of auto, torch, compiled, triton"):
        infonce(z_a, z_b, impl="bogus")
    with pytest.raises(InputError, match="choose one of"):
        nt_xent(torch.randn(4, 3), torch.randn(4, 3), TAU, impl="bogus")


@pytest.mark.parametrize(("value", "on"), [("1", True), ("0", False), ("", False)])
def test_interpreter_mode_reads_the_environment_at_call_time(monkeypatch, value, on):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert dispatch.interpreter_mode() is on


def test_triton_on_cpu_tensors_without_the_interpreter_raises(monkeypatch):
    """No silent fallback: an explicit impl="triton" on CPU tensors needs TRITON_INTERPRET=1."""
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(InputError, match="impl='triton' for infonce needs CUDA tensors"):
        infonce(torch.randn(4, 8), torch.randn(4, 8), impl="triton")
    with pytest.raises(InputError, match="needs CUDA tensors"):
        nt_xent(torch.randn(4, 8), torch.randn(4, 8), TAU, impl="triton")


def test_auto_on_cpu_runs_compiled_and_records_it(monkeypatch, capsys):
    """impl="auto" on CPU tensors runs impl="compiled" (_BlockedNTXent), records "infonce@cpu": "compiled"
    in chosen() and says so once."""
    monkeypatch.setattr(dispatch, "_chosen", {})
    ran = []
    blocked = infonce_mod._BlockedNTXent

    class Spy:
        @staticmethod
        def apply(*args):
            ran.append(args[2:4])
            return blocked.apply(*args)

    monkeypatch.setattr(infonce_mod, "_BlockedNTXent", Spy)
    z = embeddings(3, 64, seed=12)
    auto = infonce(*z, TAU)
    infonce(*z, TAU, impl="auto")
    assert ran == [(0, TAU), (0, TAU)]
    assert dispatch.chosen() == {"infonce@cpu": "compiled"}
    assert capsys.readouterr().out.count("infonce on cpu: impl='auto' runs 'compiled'") == 1
    assert float(auto.detach()) == pytest.approx(float(infonce(*z, TAU, impl="torch").detach()), rel=1e-5)


def _randn(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(13))


@pytest.mark.parametrize("impl", ["torch", "compiled"])
@pytest.mark.parametrize(
    ("call", "match"),
    [
        pytest.param(lambda i: infonce(_randn(3, 4), _randn(4, 4), impl=i), "same shape", id="z_a-z_b-rows"),
        pytest.param(lambda i: infonce(_randn(3, 4), _randn(3, 5), impl=i), "same shape", id="z_a-z_b-dims"),
        pytest.param(lambda i: infonce(_randn(12), _randn(12), impl=i), "same shape", id="1-d"),
        pytest.param(lambda i: infonce(_randn(0, 4), _randn(0, 4), impl=i), "even and > 0", id="empty"),
        pytest.param(lambda i: nt_xent(_randn(5, 4), _randn(6, 4), TAU, impl=i), "even", id="odd-rows"),
        pytest.param(lambda i: nt_xent(_randn(6, 4), _randn(7, 4), TAU, impl=i), "even", id="odd-columns"),
        pytest.param(lambda i: nt_xent(_randn(6, 4), _randn(6, 5), TAU, impl=i), r"\(2N, D\) rows", id="dims"),
        pytest.param(lambda i: nt_xent(_randn(6, 4), _randn(8, 4), TAU, offset=2, impl=i), "outside", id="offset"),
        pytest.param(lambda i: nt_xent(_randn(6, 4), _randn(8, 4), TAU, offset=-1, impl=i), "outside", id="negative"),
        pytest.param(lambda i: nt_xent(_randn(8, 4), _randn(6, 4), TAU, impl=i), "outside", id="rows>columns"),
        pytest.param(lambda i: infonce(_randn(3, 4), _randn(3, 4), 0.0, impl=i), "temperature must be > 0", id="tau0"),
        pytest.param(lambda i: infonce(_randn(3, 4), _randn(3, 4), -0.1, impl=i), "temperature", id="tau<0"),
        pytest.param(lambda i: infonce(_randn(3, 4), _randn(3, 4), math.nan, impl=i), "temperature", id="tau-nan"),
    ],
)
def test_bad_inputs_raise(impl, call, match):
    with pytest.raises(InputError, match=match):
        call(impl)


# -- on a GPU ---------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(("n", "d"), [(4096, 128), (1000, 96)])  # 1000 rows end mid-tile, 96 mid-D-slice
def test_triton_fp32_on_gpu_matches_the_reference(n, d):
    """IEEE fp32 dots on the GPU's 64-row tiles: loss and gradients within 1e-4 of the float64 reference."""
    z = embeddings(n, d, seed=14, device="cuda")
    actual = loss_and_grads(lambda a, b: infonce(a, b, TAU, impl="triton"), z)
    expected = loss_and_grads(lambda a, b: infonce(a, b, TAU, impl="torch"), float64_leaves(z))
    assert_matches(actual, expected, rtol=1e-4)


@pytest.mark.gpu
def test_triton_bf16_on_gpu_is_close_to_fp32():
    """bf16 embeddings use tensor-core dots with fp32 accumulation: the loss within 2e-2 of the fp32
    reference on the same (bf16-valued) embeddings, bf16 gradients pointing the same way (cosine > 0.99)."""
    z16 = [z.detach().bfloat16().requires_grad_() for z in embeddings(2048, 128, seed=15, device="cuda")]
    loss, grads = loss_and_grads(lambda a, b: infonce(a, b, TAU, impl="triton"), z16)
    z32 = [z.detach().float().requires_grad_() for z in z16]
    ref_loss, ref_grads = loss_and_grads(lambda a, b: infonce(a, b, TAU, impl="torch"), z32)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(ref_loss), rel=2e-2)
    for grad, ref in zip(grads, ref_grads, strict=True):
        assert grad.dtype == torch.bfloat16
        assert float(F.cosine_similarity(grad.float().flatten(), ref.flatten(), dim=0)) > 0.99


def test_many_temperatures_and_sizes_stay_within_dynamos_recompile_limit():
    """A temperature schedule or a sweep over batch sizes must not hit torch.compile's recompile limit
    (8 graphs per function, a hard error under fullgraph=True): tau is a tensor, shapes go dynamic."""
    for i in range(12):
        z_a, z_b = torch.randn(i + 2, 16, requires_grad=True), torch.randn(i + 2, 16, requires_grad=True)
        loss = infonce(z_a, z_b, 0.1 + 0.01 * i, impl="compiled")
        torch.testing.assert_close(loss, infonce(z_a, z_b, 0.1 + 0.01 * i, impl="torch"), rtol=1e-5, atol=1e-6)
        loss.backward()
