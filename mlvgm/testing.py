"""`check_mlvgm(g)`: does a generator follow the protocol every part of mlvgm relies on?

Run it on your own generator before you quantify or train with it:

    >>> from mlvgm.testing import check_mlvgm
    >>> report = check_mlvgm(my_generator)   # raises MLVGMConformanceError listing every failure
    >>> print(report)                        # the checks passed and per-level gradient norms

It checks shapes, value range, device and dtype of latents and images, determinism for a fixed
torch.Generator, that each image depends only on its own latents (no batch statistics), that the
inputs are not modified, that the library's own random streams reach `sample_latents` (see
`mlvgm.generators.base.sample_anchors`), and that gradients are finite. A level whose gradient is
exactly zero everywhere, or that forward never touches (no graph edge), is reported, not failed: an
unused latent, such as the shapes world's z6, is what quantification is meant to find.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mlvgm.generators.base import labelled, level_label, sample_anchors
from mlvgm.streams import Stream


class MLVGMConformanceError(AssertionError):
    """The generator breaks the protocol; the message lists every failed check."""


@dataclass
class ConformanceReport:
    """What check_mlvgm saw."""

    name: str
    level_dims: tuple[int, ...]
    resolution: int
    device: str
    grad_norms: list[float] = field(default_factory=list)  # per level, mean over the batch
    zero_grad_levels: list[int] = field(default_factory=list)  # 1-based levels whose gradient is exactly 0
    unconnected_levels: list[int] = field(default_factory=list)  # 1-based levels forward never uses (among those)
    checks: list[str] = field(default_factory=list)  # the checks that passed

    def __str__(self) -> str:
        lines = [
            f"{self.name}: {len(self.level_dims)} levels {self.level_dims}, {self.resolution} px, on {self.device}"
        ]
        lines += [f"  ok  {check}" for check in self.checks]
        grads = ", ".join(f"z{i + 1}={v:.3g}" for i, v in enumerate(self.grad_norms))
        lines.append(f"  gradient norms: {grads}")
        if self.zero_grad_levels:
            lines.append(f"  levels with exactly zero gradient (unused): {self.zero_grad_levels}")
        if self.unconnected_levels:
            lines.append(f"  levels forward never uses (no graph edge): {self.unconnected_levels}")
        return "\n".join(lines)


def check_mlvgm(g: torch.nn.Module, *, n: int = 4, seed: int = 0, atol: float = 1e-5) -> ConformanceReport:
    """Check `g` against the generator protocol; raise MLVGMConformanceError listing every failure.

    n:    batch size used for the checks (>= 2, so batch independence can be checked)
    seed: seed of the torch.Generator that draws the latents
    atol: tolerance for "the same image" (batch independence; determinism is checked exactly)
    """
    name = type(g).__name__
    failures: list[str] = []
    report = ConformanceReport(name, (), 0, "?")

    def fail(message: str) -> None:
        failures.append(message)

    def done() -> ConformanceReport:
        if failures:
            raise MLVGMConformanceError(f"{name} does not follow the MLVGM protocol:\n- " + "\n- ".join(failures))
        return report

    # -- declared attributes
    dims = getattr(g, "level_dims", None)
    if not isinstance(dims, tuple) or not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        fail(f"level_dims must be a non-empty tuple of positive ints, got {dims!r}")
        return done()
    resolution = getattr(g, "resolution", None)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution <= 0:
        fail(f"resolution must be a positive int, got {resolution!r}")
        return done()
    names = tuple(getattr(g, "level_names", ()) or ())
    if names and (len(names) != len(dims) or len(set(names)) != len(names)):
        fail(f"level_names must name each of the {len(dims)} levels once, got {names!r}")
    for group, members in dict(getattr(g, "groups", {}) or {}).items():
        if not members or not all(isinstance(i, int) and 0 <= i < len(dims) for i in members):
            fail(f"group {group!r} must be a non-empty tuple of level indices 0..{len(dims) - 1}, got {members!r}")
    tensors = [*g.parameters(), *g.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    report = ConformanceReport(name, dims, resolution, str(device))
    report.checks.append("level_dims, resolution, level_names and groups are well formed")

    # -- latents
    def draw(truncation=None):
        return sample_anchors(g, n, truncation=truncation, generator=_generator(device, seed))

    try:
        latents = draw()
    except Exception as exc:  # noqa: BLE001 -- user code can fail in any way: report it as a failed check
        fail(f"sample_latents(n, generator=torch.Generator) raised {type(exc).__name__}: {exc}")
        return done()
    if not isinstance(latents, list | tuple) or len(latents) != len(dims):
        fail(f"sample_latents must return one tensor per level ({len(dims)}), got {type(latents).__name__}")
        return done()
    for i, (z, d) in enumerate(zip(latents, dims, strict=True)):
        where = level_label(g, i)
        if not isinstance(z, torch.Tensor) or tuple(z.shape) != (n, d):
            fail(f"latent {where} must have shape ({n}, {d}), got {getattr(z, 'shape', type(z).__name__)}")
        elif not z.is_floating_point():
            fail(f"latent {where} must be floating point, got {z.dtype}")
        elif z.device != device:
            fail(f"latent {where} is on {z.device}, the module is on {device}: sample on the module's device")
        elif not torch.isfinite(z).all():
            fail(f"latent {where} has non-finite values")
    if failures:
        return done()
    again = draw()
    if not all(torch.equal(a, b) for a, b in zip(latents, again, strict=True)):
        fail("sample_latents is not deterministic for a torch.Generator with a fixed seed")
    other = sample_anchors(g, n, generator=_generator(device, seed + 1))
    if all(torch.equal(a, b) for a, b in zip(latents, other, strict=True)):
        fail("sample_latents ignores its generator argument (two seeds gave the same latents)")
    try:
        truncated = draw(truncation=0.5)
        if any(tuple(z.shape) != (n, d) for z, d in zip(truncated, dims, strict=True)):
            fail("sample_latents(truncation=...) changed the latent shapes")
    except Exception as exc:  # noqa: BLE001 -- user code
        fail(f"sample_latents(n, truncation=0.5) raised {type(exc).__name__}: {exc}")
    try:  # what the trainer, quantify and the views hand it: a counter-based stream's draws
        streamed = [sample_anchors(g, n, generator=Stream(seed, purpose="check").at(0)) for _ in range(2)]
        if not all(torch.equal(a, b) for a, b in zip(*streamed, strict=True)):
            fail("sample_latents is not deterministic for the torch.Generator the library derives from its streams")
    except Exception as exc:  # noqa: BLE001 -- user code
        fail(f"sample_latents failed on the library's random streams: {type(exc).__name__}: {exc}")
    report.checks.append(
        f"sample_latents: {len(dims)} tensors (n, d_i), {latents[0].dtype}, on {device}, deterministic"
    )

    # -- images
    inputs = [z.clone() for z in latents]
    with torch.no_grad():
        try:
            images = g(inputs)
        except Exception as exc:  # noqa: BLE001 -- user code
            fail(f"forward(latents) raised {type(exc).__name__}: {exc}")
            return done()
    if not isinstance(images, torch.Tensor) or tuple(images.shape) != (n, 3, resolution, resolution):
        fail(f"forward must return ({n}, 3, {resolution}, {resolution}), got {getattr(images, 'shape', type(images))}")
        return done()
    if not images.is_floating_point() or images.device != device:
        fail(f"images must be floating point on {device}, got {images.dtype} on {images.device}")
    if not torch.isfinite(images).all():
        fail("images have non-finite values")
    elif images.min() < 0 or images.max() > 1:
        fail(f"images must lie in [0, 1], got [{images.min().item():.4g}, {images.max().item():.4g}]")
    if not all(torch.equal(a, b) for a, b in zip(inputs, latents, strict=True)):
        fail("forward modified its input latents in place")
    with torch.no_grad():
        if not torch.equal(g([z.clone() for z in latents]), images):
            fail("forward is not deterministic: the same latents gave different images (eval mode, no noise)")
        half = n // 2
        part = g([z[:half].clone() for z in latents])
        if part.shape != images[:half].shape or not torch.allclose(part, images[:half], atol=atol, rtol=0):
            fail("each image must depend only on its own latents: the first half of the batch rendered alone differs")
    report.checks.append(f"forward: ({n}, 3, {resolution}, {resolution}) in [0, 1], deterministic, batch-independent")

    # -- gradients
    leaves = [z.clone().requires_grad_(True) for z in latents]
    with torch.enable_grad():
        try:
            out = g(leaves)
            weights = torch.rand(out.shape, generator=_generator(device, seed), device=device, dtype=out.dtype)
            grads = torch.autograd.grad((out * weights).sum(), leaves, allow_unused=True)
        except Exception as exc:  # noqa: BLE001 -- user code: report, don't crash the check
            fail(f"images are not differentiable with respect to the latents: {type(exc).__name__}: {exc}")
            return done()
    for i, grad in enumerate(grads):
        if grad is None:  # forward never used this level: a finding, like a zero gradient
            report.grad_norms.append(0.0)
            report.zero_grad_levels.append(i + 1)
            report.unconnected_levels.append(i + 1)
        elif not torch.isfinite(grad).all():
            fail(f"the gradient of latent {level_label(g, i)} has non-finite values")
        else:
            report.grad_norms.append(grad.norm(dim=1).mean().item())
            if not grad.any():
                report.zero_grad_levels.append(i + 1)
    report.checks.append("gradients are finite (levels that get none are listed, not failed)")
    _check_labels(g, latents, n, fail, report)
    return done()


def _check_labels(g, latents: list[torch.Tensor], n: int, fail: Callable[[str], None], report) -> None:
    """The Labelled protocol, where g declares any part of it: both parts, and factors that are classes."""
    has_factors, has_classes = hasattr(g, "factors"), hasattr(g, "factor_classes")
    if not (has_factors or has_classes):
        return
    if not labelled(g):
        fail("a labelled generator declares both a factors(latents) method and a factor_classes mapping "
             f"(this one has {'factors' if has_factors else 'factor_classes'} only)")  # fmt: skip
        return
    classes = dict(g.factor_classes)
    try:
        with torch.no_grad():
            found = g.factors([z.clone() for z in latents])
    except Exception as exc:  # noqa: BLE001 -- user code
        fail(f"factors(latents) raised {type(exc).__name__}: {exc}")
        return
    if not isinstance(found, dict) or set(found) != set(classes):
        fail(f"factors must return one tensor per factor of factor_classes ({sorted(classes)}), got "
             f"{sorted(found) if isinstance(found, dict) else type(found).__name__}")  # fmt: skip
        return
    for name, values in found.items():
        count = classes[name]
        if not (isinstance(count, int) and count > 0):
            fail(f"factor_classes[{name!r}] must be a positive int, got {count!r}")
        elif not isinstance(values, torch.Tensor) or tuple(values.shape) != (n,) or values.dtype != torch.int64:
            fail(f"factor {name!r} must be an ({n},) int64 tensor, got {getattr(values, 'shape', type(values))}")
        elif values.min() < 0 or values.max() >= count:
            fail(f"factor {name!r} must lie in [0, {count}), got [{int(values.min())}, {int(values.max())}]")
    report.checks.append(f"factors: {', '.join(f'{k} ({v} classes)' for k, v in classes.items())}")


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)
