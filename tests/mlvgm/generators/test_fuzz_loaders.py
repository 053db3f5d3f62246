"""The checkpoint loaders under a seeded fuzzer (issue 14): every file loads or raises one InputError line.

fuzz_loaders.py (beside this file) builds the cases and runs them in child processes with a memory cap
and a per-case timeout; see its docstring for the inputs, the outcomes and how to reproduce one case.

    short (default suite)  SHORT_CASES cases of MASTER_SEED, 2 children, a 2 s per-case timeout
    long (--run-slow)      MLVGM_FUZZ_CASES cases (default 100000) of MLVGM_FUZZ_SEED (default LONG_SEED),
                           MLVGM_FUZZ_WORKERS children (default 2), MLVGM_FUZZ_TIMEOUT s per case (default 10)

Both print a summary (counts per outcome, per target and per kind of input, then the failure classes
with their first cases and saved files): run with -s to see it. MLVGM_FUZZ_OUT keeps the work folder
(corpus, per-child results as JSON lines, failures/ with the offending files) instead of tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzz_loaders import (
    KIND_WEIGHTS,
    TARGETS,
    Corpus,
    classify,
    format_summary,
    make_case,
    run_campaign,
    write_corpus,
)
from fuzz_mutations import BYTE_MUTATIONS, STRUCTURE_MUTATIONS

MASTER_SEED = 14  # the number: the short run's cases are always the same ones
SHORT_CASES = 3000
LONG_SEED = 1400  # the long run covers other cases than the short one


def work_folder(tmp_path: Path, name: str) -> Path:
    out = os.environ.get("MLVGM_FUZZ_OUT")
    return Path(out) / name if out else tmp_path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


def test_the_corpus_is_the_same_bytes_every_time_and_every_seed_loads(corpus, tmp_path):
    folder, digests = corpus
    assert write_corpus(tmp_path / "again") == digests  # torch's storage keys (memory addresses) renamed
    seeds = Corpus.read(folder).seeds
    for name, data in seeds.items():
        path = tmp_path / name
        path.write_bytes(data)
        targets = ("bigbigan",) if name.startswith("bigbigan") else ("safe_load_pickle", "stylegan2")
        for target in targets:
            assert classify(target, path, 60.0) == ("ok", "", ""), (name, target)


def test_a_case_is_a_function_of_the_master_seed_and_its_index(corpus):
    seeds = Corpus.read(corpus[0])
    cases = [make_case(MASTER_SEED, i, seeds) for i in range(400)]
    assert cases[:50] == [make_case(MASTER_SEED, i, seeds) for i in range(50)]
    assert [c.data for c in cases[:50]] != [make_case(MASTER_SEED + 1, i, seeds).data for i in range(50)]
    # every kind of input, target and mutation turns up within a few hundred cases
    assert {c.kind for c in cases} == set(KIND_WEIGHTS)
    assert {c.target for c in cases} == set(TARGETS)
    assert {m for c in cases for m in c.mutations} == set(BYTE_MUTATIONS) | set(STRUCTURE_MUTATIONS)


def test_a_child_that_dies_or_hangs_is_reported_and_replaced(tmp_path):
    """The parent names the case a child was running when it was killed or stopped answering, saves that
    case's file, and starts a new child after it: the other cases still run."""
    summary = run_campaign(
        MASTER_SEED,
        12,
        tmp_path,
        workers=1,
        case_timeout=2.0,
        hang_timeout=3.0,
        selftest_crash_at=3,
        selftest_hang_at=8,
    )
    print(format_summary(summary))
    assert summary["seen"] == 12 and summary["restarts"] == 2
    lost = {e["outcome"]: e for e in summary["classes"] if e["outcome"] in ("crash", "hang")}
    assert lost["crash"]["cases"] == [3] and lost["crash"]["type"] == "signal SIGKILL"
    assert lost["hang"]["cases"] == [8]
    seeds = Corpus.read(tmp_path / "seeds")
    for outcome, index in (("crash", 3), ("hang", 8)):
        assert Path(lost[outcome]["files"][0]).read_bytes() == make_case(MASTER_SEED, index, seeds).data


def test_loaders_survive_the_short_fuzz_run(tmp_path):
    summary = run_campaign(MASTER_SEED, SHORT_CASES, work_folder(tmp_path, "short"), workers=2, case_timeout=2.0)
    print(format_summary(summary))
    assert summary["seen"] == SHORT_CASES
    assert summary["failures"] == 0, format_summary(summary)


@pytest.mark.slow
def test_loaders_survive_the_long_fuzz_run(tmp_path):
    summary = run_campaign(
        int(os.environ.get("MLVGM_FUZZ_SEED", LONG_SEED)),
        int(os.environ.get("MLVGM_FUZZ_CASES", 100_000)),
        work_folder(tmp_path, "long"),
        workers=int(os.environ.get("MLVGM_FUZZ_WORKERS", 2)),
        case_timeout=float(os.environ.get("MLVGM_FUZZ_TIMEOUT", 10.0)),
    )
    print(format_summary(summary))
    assert summary["seen"] == summary["cases"]
    assert summary["failures"] == 0, format_summary(summary)
