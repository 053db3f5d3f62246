"""bench/bench_sources.py's own logic (its benchmarks run in .ci/run and by hand): which cases the `ci` subset
selects, and the BigBiGAN Continuous-Sampling member's generator, views and determinism, on a narrow network."""

from __future__ import annotations

import dataclasses

import torch

from bench import bench_sources
from bench.bench_sources import CI_BATCH, CONFIG, cs_bigbigan


def test_the_ci_subset_is_every_source_but_bigbigan_at_the_ci_batch():
    cases = bench_sources._cases(("resident", "cs", "cs-bigbigan", "ffcv"))
    marked = sorted(c.id for c in cases if any(m.name == "ci" for m in c.marks))
    assert marked == sorted(f"{s}-{CI_BATCH}" for s in ("resident", "cs", "ffcv"))
    last = {c.id for c in cases if any(m.name == "run_last" for m in c.marks)}
    assert last == {f"cs-bigbigan-{b}" for b in bench_sources.BATCHES}  # after every other source (conftest.py)
    assert {c.id for c in cases} == {f"{s}-{b}" for s in ("resident", "cs", "cs-bigbigan", "ffcv")
                                     for b in bench_sources.BATCHES}  # fmt: skip


def narrow(batch: int = 3, crop: int = 16):
    config = dataclasses.replace(CONFIG, batch_size=batch, crop=crop, cs_compile="off")
    # 128 px (6 chunks of 20, as the published network) at a sixteenth of its width
    return cs_bigbigan(config, ch=6)


def test_cs_bigbigan_uses_the_papers_ml_random_views_on_chunks_2_to_6():
    source = narrow()
    g = source.generator
    assert (g.resolution, g.level_dims) == (128, (20,) * 6)
    assert source.truncation == 2.0
    z = g.sample_latents(64, truncation=source.truncation, generator=source.anchors.at(0))
    pair = source.views(z, source.positives.at(0))
    moved = [not torch.equal(a, p) for a, p in zip(pair.anchors, pair.positives, strict=True)]
    assert moved == [False, True, True, True, True, True]  # chunk 1 kept, chunks 2-6 perturbed
    w = torch.cat([p - a for a, p in zip(pair.anchors[1:], pair.positives[1:], strict=True)])
    assert w.abs().max() <= 2.0 + 1e-5  # N^t(0, 1, 2): sigma 1, truncated at t = 2
    assert 0.7 < w.std().item() < 1.0  # a unit normal truncated at 2 has std 0.88
    assert max(level.abs().max().item() for level in z) <= 2.0 + 1e-6  # anchors truncated at 2


def test_cs_bigbigan_views_are_a_function_of_the_step():
    a0, b0 = next(narrow().iterate(0))
    assert a0.shape == b0.shape == (3, 3, 16, 16) and torch.isfinite(a0).all()
    again = narrow().iterate(0)
    assert all(torch.equal(x, y) for x, y in zip(next(again), (a0, b0), strict=True))
    a1, _ = next(again)  # step 1
    assert not torch.equal(a1, a0)


def test_the_cs_member_is_the_source_mlvgm_train_builds_for_its_preset():
    """bench_sources' `cs` is `python -m mlvgm.train --preset shapes-ml-random --optimizer adam`'s source: the same
    config parsed from that command line, built by the same function, on the same path (and it says which)."""
    from mlvgm.config import parse_config
    from mlvgm.recipe import build_source, cs_path
    from mlvgm.train_config import PRESETS, TrainConfig

    argv = ["--preset", bench_sources.BENCH_PRESET, *(f"--{k}={v}" for k, v in bench_sources.BENCH_CHANGES.items())]
    config, _, _ = parse_config(TrainConfig, PRESETS, argv, prog="t", description="", default_preset="quickstart")
    assert config == CONFIG and config.cs_compile == "auto"
    member = dataclasses.replace(CONFIG, batch_size=CI_BATCH, crop=bench_sources.VIEW_CROP)
    made = bench_sources.make_source("cs", None, CI_BATCH, bench_sources.VIEW_CROP)
    built = build_source(member, rank=0, world=1, device=bench_sources.DEVICE)
    path = cs_path(member, bench_sources.DEVICE, bench_sources.RESOLUTION)
    assert path.compile  # 100 epochs of ImageNet-100's size: the compile is repaid on any device
    for source in (made, built):
        assert (source.mode, source.batch_size, source.truncation) == (path.mode, CI_BATCH, 2.0)
        assert source.render_chunk is None
        assert (source.augment.preset, source.augment.size) == (bench_sources.PRESET, bench_sources.VIEW_CROP)
        assert source.generator.resolution == bench_sources.RESOLUTION
    assert made.views.params == built.views.params and type(made.views) is type(built.views)
    assert made.path == built.path == path
    assert bench_sources._path(made) == {"cs_mode": path.mode, "cs_path": path.line()}
