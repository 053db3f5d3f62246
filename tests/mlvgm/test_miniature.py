"""The pre-registered miniature: its plan holds everything equal but T_z, its pilot rule and its analysis read
what the pre-registration says, and a sweep resumes from published jobs alone."""

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mlvgm import miniature_design as design
from mlvgm.errors import InputError
from mlvgm.experiments_config import ExperimentsConfig, resolved
from mlvgm.miniature import chosen_augment, done, plan_miniature, run_miniature
from mlvgm.miniature_report import analyse, pilot_decision

TZ = ("views", "view_levels", "view_sigma", "view_t")


def test_the_pilot_plan_is_s_and_m_under_each_tx_at_its_own_seed():
    jobs = plan_miniature(resolved(ExperimentsConfig(name="pilot")))
    assert [j.name for j in jobs] == ["pilot/init/s100", "pilot/S-no_color/s100", "pilot/S-none/s100",
                                      "pilot/M-no_color/s100", "pilot/M-none/s100"]  # fmt: skip
    assert design.PILOT_SEED not in range(design.SEEDS)  # no pilot run is a sweep run
    assert all(j.config["eval_train"] == 10_000 and j.config["eval_test"] == 5_000 for j in jobs)


def test_the_sweep_holds_everything_equal_but_tz_and_pairs_arms_by_seed():
    jobs = plan_miniature(resolved(ExperimentsConfig(name="miniature", augment="no_color")))
    train = [j for j in jobs if j.kind == "train"]
    assert len(train) == 4 * design.SEEDS and sum(j.kind == "init" for j in jobs) == design.SEEDS
    rest = [{k: v for k, v in j.config.items() if k not in (*TZ, "seed")} for j in train]
    assert all(r == rest[0] for r in rest), "arms differ in something besides T_z"
    assert rest[0]["augment"] == "no_color" and rest[0]["epoch_images"] == design.STEPS * 64
    m = json.loads((design.ROOT / design.M_VIEWS).read_text())
    arm_m = next(j for j in train if j.name == "miniature/M/s0").config
    assert list(arm_m["view_levels"]) == m["view_levels"] and list(arm_m["view_sigma"]) == m["view_sigma"]
    assert next(j for j in train if j.name == "miniature/N/s3").config["views"] == "none"
    # seed by seed: a sweep cut short holds whole pairs
    assert [j.config["seed"] for j in jobs] == sorted(j.config["seed"] for j in jobs)
    # a seed's untrained network does not depend on the arms asked for
    fewer = plan_miniature(resolved(ExperimentsConfig(name="miniature", augment="no_color", arms=("S",))))
    assert {j.name: j.key for j in fewer if j.kind == "init"} == {j.name: j.key for j in jobs if j.kind == "init"}


def test_the_sweep_takes_its_tx_from_the_pilot_and_refuses_a_no_go(monkeypatch):
    config = resolved(ExperimentsConfig(name="miniature"))
    monkeypatch.setattr(design, "pilot_decision", lambda: None)
    with pytest.raises(InputError, match="pilot first"):
        chosen_augment(config)
    monkeypatch.setattr(
        design, "pilot_decision", lambda: {"go": False, "why": "M gains -0.01", "augment": "none", "budget": 500}
    )
    with pytest.raises(InputError, match="no-go"):
        chosen_augment(config)
    monkeypatch.setattr(design, "pilot_decision", lambda: {"go": True, "why": "", "augment": "none", "budget": 500})
    assert chosen_augment(config) == "none"
    assert chosen_augment(resolved(ExperimentsConfig(name="miniature", augment="no_color"))) == "no_color"


def pilot_runs(gains: dict[str, float], init: float = 0.30) -> pd.DataFrame:
    rows = [{"arm": "init", "augment": "", "factor": "shape", "seed": 100, "linear_top1": init}]
    rows += [{"arm": "M", "augment": tx, "factor": "shape", "seed": 100, "linear_top1": init + g}
             for tx, g in gains.items()]  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("gains", "augment", "go"),
    [
        ({"no_color": 0.06, "none": 0.075}, "no_color", True),  # within the tie: crop + flip
        ({"no_color": 0.03, "none": 0.08}, "none", True),  # clearly larger without T_x
        ({"no_color": 0.09, "none": 0.02}, "no_color", True),
        ({"no_color": 0.04, "none": 0.045}, "no_color", False),  # below the go gain
    ],
)
def test_the_pilot_rule(gains, augment, go):
    decision = pilot_decision(pilot_runs(gains), budget=500)
    assert decision["augment"] == augment and decision["go"] == go and decision["budget"] == 500


def sweep_runs(m_minus_s: list[float], *, init=0.30, s_gain=0.06) -> pd.DataFrame:
    rows = []
    for seed, d in enumerate(m_minus_s):
        base = init + 0.01 * (seed % 3)  # seeds differ; the pairing removes it
        for arm, value in (("init", base), ("S", base + s_gain), ("M", base + s_gain + d), ("P", base + s_gain),
                           ("N", base + 0.001 * seed)):  # fmt: skip
            rows.append({"arm": arm, "factor": "shape", "seed": seed, "linear_top1": value, "knn_top1": value})
    return pd.DataFrame(rows)


def test_a_clear_difference_is_the_primary_result_and_the_secondaries_are_holm_corrected():
    result = analyse(sweep_runs([0.05, 0.04, 0.06, 0.05, 0.045, 0.055, 0.05, 0.04]))
    primary = result["primary"]
    assert primary["comparison"] == "M - S" and primary["significant"] and "tost" not in primary
    assert primary["mean"] == pytest.approx(0.04875)
    secondary = {(r["comparison"], r["probe"]): r for r in result["secondary"]}
    assert set(secondary) == {("M - S", "knn"), ("P - S", "linear"), ("S - N", "linear"), ("M - N", "linear")}
    raw = sorted(r["p"] for r in result["secondary"])
    assert min(r["p_holm"] for r in result["secondary"]) == pytest.approx(min(1.0, 4 * raw[0]))
    assert all(result["arms"][a]["learns"] for a in ("S", "M", "P")) and not result["arms"]["N"]["learns"]


def test_no_difference_goes_to_the_equivalence_test():
    tiny = analyse(sweep_runs([0.002, -0.003, 0.001, 0.0, -0.002, 0.003, -0.001, 0.001]))["primary"]
    assert not tiny["significant"] and tiny["tost"]["equivalent"]
    noisy = analyse(sweep_runs([0.06, -0.05, 0.04, -0.07, 0.05, -0.04, 0.03, -0.02]))["primary"]
    assert not noisy["significant"] and not noisy["tost"]["equivalent"]  # the data cannot tell


def test_a_sweep_resumes_from_its_published_jobs_alone(tmp_path, capsys):
    config = resolved(ExperimentsConfig(name="miniature", augment="none", arms=("N",), seeds=2, budget=2,
                                        eval_train=256, eval_test=128, out=str(tmp_path / "out"),
                                        runs=str(tmp_path / "runs"), device="cpu"))  # fmt: skip
    first = run_miniature(config)
    assert first["ran"] == 4
    jobs = plan_miniature(config)
    assert all(done(j, tmp_path / "out") for j in jobs)
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(runs) == 4 and "shape_linear" in runs
    shutil.rmtree(tmp_path / "runs")  # a fresh clone: the checkpoints are gone, the published jobs committed
    assert run_miniature(config)["ran"] == 0
    assert "0 to run" in capsys.readouterr().out
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "jobs: 4 published" in readme and "| N: no T_z" in readme and "Interim" not in readme
    # analysing a sweep cut short: nothing runs, and the README says it is an interim look
    shutil.rmtree(tmp_path / "out" / "jobs" / jobs[-1].folder(tmp_path).name)
    more = dataclasses.replace(config, analyse_only=True)
    assert run_miniature(more)["ran"] == 0 and not done(jobs[-1], tmp_path / "out")
    assert "Interim: 1 of 2 seeds complete" in (tmp_path / "out" / "README.md").read_text()


def test_the_report_names_each_machine_and_the_seeds_that_ran_on_two():
    from mlvgm.miniature_report import provenance_lines

    rows = [{"job": f"{arm}/s{seed}", "seed": seed, "commit": "abc", "dirty": False, "seconds": 60.0, "cpu": cpu}
            for seed, arm, cpu in ((0, "S", "AMD EPYC"), (0, "M", "AMD EPYC"), (1, "S", "AMD EPYC"),
                                   (1, "M", "Intel Xeon"), (2, "S", "Intel Xeon"), (2, "M", "Intel Xeon"))]  # fmt: skip
    lines = provenance_lines(pd.DataFrame(rows))
    assert "- hardware: AMD EPYC (3 jobs), Intel Xeon (3 jobs)" in lines
    assert lines[-1].startswith("- seed 1 ran on more than one machine, so its paired differences")


def test_a_job_dirty_only_with_the_sweeps_own_outputs_is_told_apart():
    from mlvgm.miniature import outputs_only

    out = Path("results/paper/miniature")
    own = {"dirty": True, "changed": ["results/paper/miniature/runs.csv"], "changed_count": 1}
    assert outputs_only(own, out)
    assert not outputs_only({**own, "changed": ["mlvgm/recipe.py", *own["changed"]], "changed_count": 2}, out)
    assert not outputs_only({**own, "changed_count": 30}, out)  # more changes than the record lists
    assert not outputs_only({"dirty": True}, out)  # an older record without its changed paths: dirty
    assert not outputs_only({"dirty": False, "changed": []}, out)  # clean is not "dirty with own outputs"
