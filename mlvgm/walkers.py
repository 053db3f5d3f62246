"""Learned latent perturbations ("walkers"): T_i(z_i) = z_i + p(z_i; phi_i), one per level or group.

The perturbation p is Li et al.'s (2022, COP-Gen) two-layer MLP, Linear(d, d) - ReLU - Linear(d, d),
initialised near zero (weights N(0, 0.01), biases U(-0.001, 0.001)) so training starts from views equal
to their anchors. The paper (section 3.1, eq. 5) trains one walker per level adversarially against an
InfoNCE critic (mlvgm.quantify); the trained walkers then make the *learned* views.

A walker acts on a *unit*: one level, a group of levels concatenated (StyleGAN2's groups of 4 w's), or
every level at once (`single=True`: the single-latent LVGM baseline, Li et al.'s learned views).

Walkers are saved as safetensors plus a JSON description (never a pickled module) and load only into
a generator with the same level sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from mlvgm.errors import InputError, check_positive_int
from mlvgm.generators.base import device_of, level_label, resolve_levels, sample_anchors
from mlvgm.generators.checks import check_finite
from mlvgm.io import atomic_path, atomic_write_json, check_regular_file, field, read_json
from mlvgm.progress import Progress
from mlvgm.streams import Stream

FORMAT = "mlvgm-walkers/1"


class Walker(nn.Module):
    """T(z) = z + p(z) on a (B, d) unit of the latents."""

    def __init__(self, dim: int, hidden: int | None = None, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        hidden = hidden or dim
        self.p = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))
        with torch.no_grad():  # near the zero perturbation: the first views equal their anchors
            for layer in (self.p[0], self.p[2]):
                layer.weight.normal_(0.0, 0.01, generator=generator)
                layer.bias.uniform_(-0.001, 0.001, generator=generator)

    def forward(self, z: Tensor) -> Tensor:  # (B, d) -> (B, d)
        return z + self.p(z)


class LevelWalkers(nn.Module):
    """One walker per unit of a generator's levels.

    g:      the generator (its level_dims, level_names and groups resolve `units`)
    units:  level selections, one walker each: 1-based numbers, names or group names (a group or a
            list makes one unit of the concatenated levels); None = one unit per level
    single: one walker over all levels concatenated (the single-latent baseline); excludes `units`
    hidden: hidden width of each MLP (default: the unit's dimension, as in COP-Gen)
    seed:   seed of the initial weights
    """

    def __init__(
        self,
        g,
        units: Sequence[int | str | Sequence[int | str]] | None = None,
        *,
        single: bool = False,
        hidden: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.level_dims = tuple(int(d) for d in g.level_dims)
        if single and units is not None:
            raise InputError("single=True makes one walker over every level: do not also name units")
        if single:
            resolved = [tuple(range(len(self.level_dims)))]
        elif units is None:
            resolved = [(i,) for i in range(len(self.level_dims))]
        else:
            resolved = [resolve_levels(g, unit) for unit in units]
            seen: set[int] = set()
            for unit in resolved:
                if seen & set(unit):
                    raise InputError(f"level {level_label(g, min(seen & set(unit)))} is in two units: name it once")
                seen |= set(unit)
        if hidden is not None and hidden <= 0:
            raise InputError(f"hidden must be > 0, got {hidden}")
        self.units: list[tuple[int, ...]] = resolved
        groups = {tuple(sorted(v)): name for name, v in (getattr(g, "groups", {}) or {}).items()}
        self.labels = ["all"] if single else [groups.get(u, "+".join(level_label(g, i) for i in u)) for u in resolved]
        self.hidden = hidden
        self.single = single
        init = torch.Generator().manual_seed(seed)
        self.walkers = nn.ModuleList(Walker(self.unit_dim(k), hidden, generator=init) for k in range(len(resolved)))

    def unit_dim(self, k: int) -> int:
        return sum(self.level_dims[i] for i in self.units[k])

    def __len__(self) -> int:
        return len(self.units)

    def unit_latent(self, latents: Sequence[Tensor], k: int) -> Tensor:
        """(B, d_k): unit k's levels of `latents`, concatenated."""
        return torch.cat([latents[i] for i in self.units[k]], dim=1)

    def perturb(self, latents: Sequence[Tensor], k: int) -> list[Tensor]:
        """The positives of unit k: its levels replaced by T_k(z_k), every other level as it was."""
        moved = self.walkers[k](self.unit_latent(latents, k))  # (B, d_k)
        parts = torch.split(moved, [self.level_dims[i] for i in self.units[k]], dim=1)
        out = list(latents)
        for i, part in zip(self.units[k], parts, strict=True):
            out[i] = part
        return out

    def norms(self, latents: Sequence[Tensor], k: int) -> Tensor:
        """(B,) ||T_k(z_k) - z_k||_2: the perturbation magnitude the paper's Table 1 summarises."""
        z = self.unit_latent(latents, k)
        return (self.walkers[k](z) - z).norm(dim=1)

    # --- files ----------------------------------------------------------------------------------------

    def describe(self) -> dict:
        return {
            "format": FORMAT,
            "level_dims": list(self.level_dims),
            "units": [list(u) for u in self.units],
            "labels": self.labels,
            "hidden": self.hidden,
            "single": self.single,
        }

    def save(self, path: str | Path, **extra) -> Path:
        """Write PATH.safetensors and PATH.json (the description, plus `extra`), each atomically."""
        path = Path(path).with_suffix(".safetensors")
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT})
        atomic_write_json(path.with_suffix(".json"), {**self.describe(), **extra})
        return path

    @classmethod
    def load(cls, path: str | Path, g) -> LevelWalkers:
        """Walkers saved by `save`, for generator g (its level sizes must match the file's).

        The JSON is checked field by field and every tensor shape in the safetensors header is compared with
        the one the JSON implies before anything is allocated: a `hidden` of 10**6 costs the file, not 4 TB.
        """
        path = Path(path).with_suffix(".safetensors")
        meta_path = path.with_suffix(".json")
        if not path.exists() or not meta_path.exists():
            raise InputError(f"{path} and {meta_path.name} beside it are needed: give the path LevelWalkers.save wrote")
        fix = "give the files LevelWalkers.save wrote (python -m mlvgm.quantify --out DIR), or save them again"
        check_regular_file(path, what="walkers file", fix=fix)  # a FIFO would block the reader
        meta = read_json(meta_path, what="walkers description", fix=fix)
        units, single, hidden = _checked_description(meta, str(meta_path), g, fix)
        dims = [sum(int(g.level_dims[i]) for i in unit) for unit in units]
        expected = {}
        for k, d in enumerate(dims):
            h = hidden or d
            expected |= {f"walkers.{k}.p.0.weight": (h, d), f"walkers.{k}.p.0.bias": (h,),
                         f"walkers.{k}.p.2.weight": (d, h), f"walkers.{k}.p.2.bias": (d,)}  # fmt: skip
        try:
            with safe_open(str(path), framework="pt") as f:
                found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        except (OSError, ValueError, SafetensorError) as error:
            raise InputError(f"{path} is not a readable walkers file ({_first_line(error)}): {fix}") from None
        for name in sorted(set(expected) | set(found)):
            if found.get(name) != expected.get(name):
                raise InputError(
                    f"{path} does not match its description {meta_path.name}: tensor {name!r} has shape "
                    f"{found.get(name, 'none')}, the description gives {expected.get(name, 'none')}: {fix}"
                )
        try:
            tensors = load_file(str(path))  # shapes checked: this allocates what the file holds
        except (OSError, ValueError, SafetensorError) as error:
            raise InputError(f"{path} is not a readable walkers file ({_first_line(error)}): {fix}") from None
        check_finite(((k, tensors[k]) for k in sorted(tensors)), where=f"walkers file {path}", fix=fix)
        walkers = cls(g, None if single else [[i + 1 for i in u] for u in units], single=single, hidden=hidden)
        walkers.load_state_dict(tensors)
        return walkers.to(device_of(g))


def _checked_description(meta: object, where: str, g, fix: str) -> tuple[list[list[int]], bool, int | None]:
    """(units as 0-based level lists, single, hidden) of a walkers JSON, each field's type and range checked."""
    if field(meta, "format", str, where=where, fix=fix, default=None) != FORMAT:
        raise InputError(f"{where} is not an mlvgm walkers description (format {meta.get('format')!r}): {fix}")
    level_dims = field(meta, "level_dims", list, where=where, fix=fix, high=10_000)
    if level_dims != list(g.level_dims):  # an int list equal to the generator's: its sizes are sound
        raise InputError(
            f"{where} was trained for levels of sizes {_short(level_dims)}, this generator has "
            f"{tuple(g.level_dims)}: load walkers trained on the same generator"
        )
    single = field(meta, "single", bool, where=where, fix=fix)
    hidden = meta.get("hidden")  # null: each walker as wide as its unit
    if hidden is not None:
        hidden = field(meta, "hidden", int, where=where, fix=fix, low=1)
    units = field(meta, "units", list, where=where, fix=fix, low=1, high=len(level_dims))
    seen: set[int] = set()
    for k, unit in enumerate(units):
        if not (isinstance(unit, list) and unit) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < len(level_dims) for i in unit
        ):
            raise InputError(f"{where}: units[{k}] must be a list of level indices 0..{len(level_dims) - 1}, "
                             f"got {_short(unit)}: {fix}")  # fmt: skip
        if seen & set(unit) or len(set(unit)) != len(unit):
            raise InputError(f"{where}: level {min(seen & set(unit) or set(unit))} is in two units: {fix}")
        seen |= set(unit)
    if single and units != [list(range(len(level_dims)))]:
        raise InputError(f"{where}: single walkers must have one unit of every level, got {_short(units)}: {fix}")
    return units, single, hidden


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:160] if text else type(error).__name__


def monte_carlo(
    g,
    walkers: LevelWalkers,
    *,
    samples: int = 100_000,  # M latents, drawn in batches
    batch_size: int = 1024,
    truncation: float = 2.0,  # anchors ~ N^t(0, 1, t), as in training
    seed: int = 0,
    progress: bool = True,
):
    """Per unit: mu and sigma of ||T_k(z_k) - z_k|| over M fresh anchors, with a 95% interval for mu.

    Returns a pandas.DataFrame with columns unit, levels, mu, sigma, ci95 (half-width, 1.96 sigma /
    sqrt(M)), samples, and z_norm: the mean ||z_k|| of the anchors themselves, the unit's typical latent
    norm that a perturbation is measured against (mlvgm.verdicts). Batches are merged in float64 with
    Chan et al.'s pairwise update, which keeps sigma exact even when it is tiny next to mu.
    """
    check_positive_int("samples", samples)
    check_positive_int("batch_size", batch_size)
    stream = Stream(seed, purpose="monte-carlo")
    mean = torch.zeros(len(walkers), dtype=torch.float64)
    m2 = torch.zeros(len(walkers), dtype=torch.float64)  # sum of squared deviations from the mean
    z_sum = torch.zeros(len(walkers), dtype=torch.float64)  # sum of the anchors' ||z_k||
    done = 0
    bar = Progress(samples, desc="Monte Carlo", unit="z", enabled=progress)
    with torch.no_grad():
        for step in range(math.ceil(samples / batch_size)):
            n = min(batch_size, samples - done)
            anchors = sample_anchors(g, n, truncation=truncation, generator=stream.at(step))
            for k in range(len(walkers)):
                norms = walkers.norms(anchors, k).double().cpu()
                if not torch.isfinite(norms).all():
                    raise InputError(f"walker {walkers.labels[k]} gives non-finite perturbations: it diverged")
                batch_mean = norms.mean()
                delta = batch_mean - mean[k]
                m2[k] += ((norms - batch_mean) ** 2).sum() + delta * delta * done * n / (done + n)
                mean[k] += delta * n / (done + n)
                z_sum[k] += walkers.unit_latent(anchors, k).double().norm(dim=1).sum().cpu()
            done += n
            bar.update(n)
    bar.close()
    mu = mean
    sigma = (m2 / max(samples - 1, 1)).sqrt()  # the sample standard deviation
    return pd.DataFrame(
        {
            "unit": walkers.labels,
            "levels": [",".join(str(i + 1) for i in u) for u in walkers.units],
            "mu": mu.tolist(),
            "sigma": sigma.tolist(),
            "ci95": (1.96 * sigma / math.sqrt(samples)).tolist(),
            "samples": samples,
            "z_norm": (z_sum / samples).tolist(),
        }
    )
