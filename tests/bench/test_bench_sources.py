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
    config = dataclasses.replace(CONFIG, batch_size=batch, crop=crop, compile_generator=False)
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
