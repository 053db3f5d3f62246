"""A corpus of bad input to every command line: misspelt flags, values of the wrong type or range, paths
that are missing, are a folder where a file goes (or a file where a folder goes), output folders that
cannot be written, and input files that are damaged (checkpoints, run folders, benchmark JSONs, images).

Each case must end the same way, before any work: exit status 2, one line on stderr that names the
problem and the fix, no traceback, and the work tree (every name, size and mtime) as it was, pre-existing
output included. Run in-process through mlvgm.cli.run, as `python -m` runs the commands
(tests/mlvgm/test_cli.py holds the first cases of views and export and the parser's own)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from mlvgm import cli

# the command each corpus case runs: module -> how its usage line names it
PROGS = {
    "mlvgm.train": "python -m mlvgm.train", "mlvgm.quantify": "python -m mlvgm.quantify",
    "mlvgm.evaluate": "python -m mlvgm.evaluate", "mlvgm.grid": "python -m mlvgm.grid",
    "mlvgm.data.export": "python -m mlvgm.data.export", "bench.compare": "python -m bench.compare",
    "bench.figure5": "python -m bench.figure5", "bench.kernels.report": "python -m bench.kernels.report",
    "bench.gpu_check": "python bench/gpu_check.py", "mlvgm.experiments": "python -m mlvgm.experiments",
    "mlvgm.zoo.train": "python -m mlvgm.zoo.train", "mlvgm.zoo.evidence": "python -m mlvgm.zoo.evidence",
    "mlvgm.zoo.control": "python -m mlvgm.zoo.control",
}  # fmt: skip


def call(module_name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of the command, in this process."""
    module = importlib.import_module(module_name)
    try:
        code = cli.run(module.main, PROGS[module_name], argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: folders by name, files by name, size and mtime."""
    tree = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        tree[str(path.relative_to(root))] = ("dir",) if path.is_dir() else (stat.st_size, stat.st_mtime_ns)
    return tree


# --- the work tree every case starts from ------------------------------------------------------------


def benchmark(group: str, name: str, median: float, **extra) -> dict:
    stats = {"median": median, "min": median, "max": median, "rounds": 3}
    return {"group": group, "name": name, "params": None, "extra_info": extra, "stats": stats}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Inputs good and bad: a small trained-looking run, benchmark JSONs, checkpoint-named junk, images."""
    from mlvgm.checkpoint import save_checkpoint
    from mlvgm.config import make_config
    from mlvgm.recipe import build_method, build_optimizer, peak_lr
    from mlvgm.train_config import PRESETS, TrainConfig

    root = tmp_path_factory.mktemp("template")
    (root / "text.pkl").write_text("a text file, not a network pickle\n")
    (root / "empty.pth").write_bytes(b"")
    (root / "truncated.pkl").write_bytes(pickle.dumps({"G_ema": list(range(100))}, protocol=4)[:24])
    (root / "folder").mkdir()
    (root / "folder.json").mkdir()  # a folder named like the file a command wants
    (root / "folder.png").mkdir()
    (root / "garbage.json").write_text("{not json")
    (root / "types.json").write_text(json.dumps({"epochs": "many"}))
    (root / "not_list.json").write_text(json.dumps({"benchmarks": "all of them"}))
    (root / "bad_entries.json").write_text(json.dumps({"benchmarks": [{"group": "sources-batch32", "stats": {}}]}))
    run = {"machine_info": {"node": "box", "cpu": {"brand_raw": "Test CPU", "count": 2}},
           "commit_info": {"id": "a" * 40, "dirty": False}, "datetime": "2026-01-01T00:00:00"}  # fmt: skip
    sources = [benchmark("sources-batch32", "cs", 0.1, source="cs", images_per_s=4000.0),
               benchmark("sources-batch32", "folder", 0.1, source="imagefolder", images_per_s=1000.0)]  # fmt: skip
    (root / "bench.json").write_text(json.dumps({**run, "benchmarks": sources}))
    no_median = {**sources[0], "stats": {"mean": 0.1}}
    (root / "no_median.json").write_text(json.dumps({**run, "benchmarks": [no_median]}))
    kernels = [benchmark("perturb-shapes-64x6x20", "paper", 0.01, impl="paper", gb_per_s=1.0)]
    (root / "kernels.json").write_text(json.dumps({**run, "benchmarks": kernels}))
    (root / "base.json").write_text(json.dumps({"schema": 1, "machine": {"summary": "?"}, "figures": {"x": 1.0}}))
    (root / "existing").mkdir()
    (root / "existing" / "keep.txt").write_text("mine")
    # an ImageFolder (train/ and val/ of one class) with one text file named like an image among the images
    for split in ("train", "val"):
        (root / "images" / split / "disc").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(root / "images" / split / "disc" / f"{i}.jpg")
    (root / "images" / "train" / "disc" / "3.png").write_text("not a PNG")
    issue_27_files(root)
    # a run folder as python -m mlvgm.train leaves it after its first checkpoint (a narrow ResNet: small files)
    config = make_config(TrainConfig, PRESETS, "quickstart", {"width": 8, "proj_hidden": 16, "proj_dim": 8,
                                                             "eval_train": 16, "eval_test": 16})  # fmt: skip
    (root / "run").mkdir()
    saved = {"config": dataclasses.asdict(config), "preset": "quickstart"}
    (root / "run" / "config.json").write_text(json.dumps(saved))
    torch.manual_seed(0)
    method = build_method(config)
    save_checkpoint(root / "run", method, build_optimizer(config, method.param_groups(peak_lr(config))), step=1,
                    extra={"epoch": 0.02, "elapsed_s": 1.0, "total_steps": 240})  # fmt: skip
    return root


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: Pillow reads the size from the header alone."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


def issue_27_files(root: Path) -> None:
    """Files that describe more than they hold (issue 27): walkers and embedded weights whose JSON was edited,
    NaN weights, JSON nested 10**5 deep, a compressed .pth, a decompression-bomb header."""
    import zipfile

    from safetensors.torch import load_file, save_file

    from mlvgm.generators import load_generator
    from mlvgm.generators.embedded import save_weights
    from mlvgm.generators.hvae import Decoder, HVAEConfig
    from mlvgm.walkers import LevelWalkers

    deep = '{"a": ' * 100_000 + "1" + "}" * 100_000
    (root / "deep.json").write_text(deep)
    (root / "nan.json").write_text('{"budget_minutes": NaN}')
    g = load_generator("shapes:resolution=32")  # the quickstart preset's generator
    for name, change in [("hidden", {"hidden": 10**8}), ("units", {"units": [[0], "1"]}), ("nan", {}), ("deep", {})]:
        path = LevelWalkers(g, hidden=8).save(root / f"walkers_{name}")
        meta = json.loads(path.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(deep if name == "deep" else json.dumps({**meta, **change}))
        if name == "nan":
            tensors = load_file(str(path))
            tensors["walkers.2.p.0.weight"][0, 0] = float("nan")
            save_file(tensors, str(path))
    config = HVAEConfig(resolution=16, widths=((16, 8), (8, 8), (4, 8)), levels=((4, 2), (8, 1)),
                        level_names=("a", "b"))  # fmt: skip
    for name in ("wide", "nan", "type", "deep"):
        path = root / f"embedded_{name}.safetensors"
        save_weights(Decoder(config), {"hvae": config.to_dict()}, path)
        meta = {"hvae": config.to_dict()}
        if name == "wide":
            meta["hvae"]["widths"] = [[16, 4096], [8, 4096], [4, 4096]]
        if name == "type":
            meta["hvae"]["resolution"] = "16"
        path.with_suffix(".json").write_text(deep if name == "deep" else json.dumps(meta))
        if name == "nan":
            tensors = load_file(str(path))
            tensors["out.bias"][0] = float("inf")
            save_file(tensors, str(path))
    torch.save({"w": torch.zeros(4)}, root / "stored.pth")
    with (
        zipfile.ZipFile(root / "stored.pth") as z,
        zipfile.ZipFile(root / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as w,
    ):
        for info in z.infolist():
            w.writestr(info.filename, z.read(info.filename))
    (root / "stored.pth").unlink()
    (root / "bomb" / "disc").mkdir(parents=True)
    (root / "bomb" / "disc" / "huge.png").write_bytes(png_header(20000, 20000))
    (root / "deep.pkl").write_bytes(b"\x80\x04" + b"]" * 5000 + b"a" * 4999 + b".")


# --- damage that a copy cannot carry: FIFOs and symlink loops (shutil.copytree would block or recurse on them)


def fifo_config(work: Path) -> None:
    os.mkfifo(work / "fifo.json")


def fifo_checkpoint(work: Path) -> None:
    os.mkfifo(work / "fifo.pth")


def fifo_walkers(work: Path) -> None:
    os.mkfifo(work / "fifo.safetensors")
    (work / "fifo.json").write_text("{}")


def fifo_embedded(work: Path) -> None:
    os.mkfifo(work / "fifo.safetensors")
    shutil.copy(work / "embedded_nan.json", work / "fifo.json")


def fifo_image(work: Path) -> None:
    (work / "images" / "train" / "disc" / "3.png").unlink()  # the text file named like an image, replaced
    os.mkfifo(work / "images" / "train" / "disc" / "3.png")  # Pillow would block reading it


def symlink_loop(work: Path) -> None:
    """A class folder holding two links to itself: os.walk(followlinks=True) walks it 2**depth times."""
    folder = work / "loop" / "disc"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "0.jpg")
    (folder / "a").symlink_to(".")
    (folder / "b").symlink_to(".")


@pytest.fixture
def work(template, tmp_path) -> Path:
    """A fresh copy of the template for one case."""
    return Path(shutil.copytree(template, tmp_path / "work"))


# --- damage done to the copy before a case runs --------------------------------------------------------


def _checkpoint_file(work: Path) -> Path:
    return work / "run" / json.loads((work / "run" / "checkpoint.json").read_text())["file"]


def truncated_checkpoint(work: Path) -> None:
    path = _checkpoint_file(work)
    path.write_bytes(path.read_bytes()[:100])


def checkpoint_record_without_file(work: Path) -> None:
    (work / "run" / "checkpoint.json").write_text(json.dumps({"step": 1, "param_groups": []}))


def checkpoint_record_a_list(work: Path) -> None:
    (work / "run" / "checkpoint.json").write_text("[]")


def no_checkpoint(work: Path) -> None:
    _checkpoint_file(work).unlink()
    (work / "run" / "checkpoint.json").unlink()


def config_of_another_version(work: Path) -> None:
    saved = json.loads((work / "run" / "config.json").read_text())
    saved["config"]["warp_drive"] = True
    (work / "run" / "config.json").write_text(json.dumps(saved))


def config_with_a_string_for_a_number(work: Path) -> None:
    saved = json.loads((work / "run" / "config.json").read_text())
    saved["config"]["epochs"] = "four"
    (work / "run" / "config.json").write_text(json.dumps(saved))


def probes_md_is_a_folder(work: Path) -> None:
    (work / "run" / "probes.md").mkdir()


def kernels_md_is_a_folder(work: Path) -> None:
    (work / "kernels.md").mkdir()


REPORT = "bench.kernels.report"

# (module, argv, the text the one error line must hold, damage to do first)
CASES = [
    # mlvgm.train
    ("mlvgm.train", ["--batchsize", "8"], "unknown option '--batchsize': did you mean --batch_size", None),
    ("mlvgm.train", ["--width", "wide"], "--width must be an integer, got 'wide'", None),
    ("mlvgm.train", ["--width", "4"], "width must be an integer from 8 to 256", None),
    ("mlvgm.train", ["--cuda_graphs", "on", "--device", "cpu", "--out", "{work}/new"],
     "--cuda_graphs on needs a CUDA device, not cpu: use --cuda_graphs off", None),
    ("mlvgm.train", ["--cuda_graphs", "yes"], "cuda_graphs must be one of on, off, got 'yes'", None),
    ("mlvgm.train", ["--cs_compile", "maybe"], "cs_compile must be one of auto, on, off, got 'maybe'", None),
    ("mlvgm.train", ["--out", "{work}/text.pkl"], "text.pkl is a file, not a folder: choose another --out", None),
    ("mlvgm.train", ["--out", "{readonly}/run"], "cannot write in folder", None),
    ("mlvgm.train", ["--out", "{work}/run"], "already holds a run: --resume", None),
    ("mlvgm.train", ["--results", "{work}/text.pkl/r", "--out", "{work}/new"], "choose another --results", None),
    ("mlvgm.train", ["--generator", "stylegan2", "--checkpoint", "{work}/text.pkl", "--out", "{work}/new"],
     "text.pkl is not a network pickle", None),
    ("mlvgm.train", ["--generator", "bigbigan", "--checkpoint", "{work}/empty.pth", "--out", "{work}/new"],
     "empty.pth' is not a plain torch state dict", None),
    ("mlvgm.train", ["--generator", "stylegan2", "--checkpoint", "{work}/none.pkl", "--out", "{work}/new"],
     "none.pkl does not exist: give the path", None),
    ("mlvgm.train", ["--config", "{work}/folder"], "cannot read it (Is a directory): give a JSON file", None),
    ("mlvgm.train", ["--config", "{work}/types.json", "--out", "{work}/new"],
     "types.json: epochs must be an integer, got 'many': fix the file", None),
    ("mlvgm.train", ["--source", "imagefolder", "--data", "{work}/text.pkl", "--out", "{work}/new"],
     "image folder", None),
    ("mlvgm.train", ["--source", "imagefolder", "--data", "{work}/images", "--batch_size", "2", "--out", "{work}/new"],
     "3.png is not an image Pillow can read: remove or replace it", None),
    ("mlvgm.train", ["--views", "learned", "--walkers", "{work}/text.pkl", "--out", "{work}/new"],
     "walkers file {work}/text.safetensors does not exist", None),
    ("mlvgm.train", ["--resume", "{work}/none"], "is not a run folder (no config.json)", None),
    ("mlvgm.train", ["--resume", "{work}/run"], "is not a readable safetensors file", truncated_checkpoint),
    ("mlvgm.train", ["--resume", "{work}/run"], "names no checkpoint file and step: the run folder is damaged, start",
     checkpoint_record_without_file),
    ("mlvgm.train", ["--resume", "{work}/run"], "names no checkpoint file", checkpoint_record_a_list),
    ("mlvgm.train", ["--resume", "{work}/run"], "'warp_drive', which this version of mlvgm does not know",
     config_of_another_version),
    ("mlvgm.train", ["--resume", "{work}/run"], "epochs must be an integer, got 'four'",
     config_with_a_string_for_a_number),
    ("mlvgm.train", ["--resume", "{work}/run", "--epochs", "9"], "was made with epochs=4, not 9", None),
    ("mlvgm.train", ["--generator", "stylegan2", "--checkpoint", "{work}/folder", "--out", "{work}/new"],
     "folder is a folder: give the weights file inside it", None),
    # mlvgm.evaluate
    ("mlvgm.evaluate", ["--rnu", "{work}/run"], "unknown option '--rnu': did you mean --run", None),
    ("mlvgm.evaluate", ["--run", "{work}/run", "--device", "gpu"], "unknown device 'gpu'", None),
    ("mlvgm.evaluate", ["--run", "{work}/none"], "is not a run folder (no config.json)", None),
    ("mlvgm.evaluate", ["--run", "{work}/text.pkl"], "is not a run folder (no config.json)", None),
    ("mlvgm.evaluate", ["--run", "{work}/run"], "no checkpoint yet: python -m mlvgm.train --resume", no_checkpoint),
    ("mlvgm.evaluate", ["--run", "{work}/run"], "the checkpoint is damaged, start a new run", truncated_checkpoint),
    ("mlvgm.evaluate", ["--run", "{work}/run"], "names no checkpoint file", checkpoint_record_a_list),
    ("mlvgm.evaluate", ["--run", "{work}/run"], "'warp_drive', which this version", config_of_another_version),
    ("mlvgm.evaluate", ["--run", "{work}/run"], "probes.md is a folder, where the evaluation writes its table",
     probes_md_is_a_folder),
    ("mlvgm.evaluate", ["--run", "{work}/run", "--data", "{work}/images"],
     "3.png is not an image Pillow can read: remove or replace it", None),
    ("mlvgm.evaluate", ["--run", "{work}/run", "--data", "{work}/none"], "does not exist: evaluation needs", None),
    # mlvgm.quantify
    ("mlvgm.quantify", ["--gama", "1"], "unknown option '--gama': did you mean --gamma", None),
    ("mlvgm.quantify", ["--gamma", "-1"], "gamma must be > 0, got -1.0", None),
    ("mlvgm.quantify", ["--batch_size", "x"], "--batch_size must be an integer, got 'x'", None),
    ("mlvgm.quantify", ["--min_samples", "500", "--max_samples", "100"], "must not exceed max_samples", None),
    ("mlvgm.quantify", ["--generator", "stylegan2", "--checkpoint", "{work}/text.pkl"], "not a network pickle", None),
    ("mlvgm.quantify", ["--generator", "stylegan2", "--checkpoint", "{work}/truncated.pkl"], "truncated.pkl", None),
    ("mlvgm.quantify", ["--generator", "bigbigan", "--checkpoint", "{work}/empty.pth"], "not a plain torch state dict",
     None),
    ("mlvgm.quantify", ["--generator", "bigbigan"], "needs its weights: pass --checkpoint PATH", None),
    ("mlvgm.quantify", ["--out", "{work}/text.pkl"], "is a file, not a folder: choose another --out", None),
    ("mlvgm.quantify", ["--out", "{readonly}/q"], "cannot write in folder", None),
    ("mlvgm.quantify", ["--levels", "9", "--critic", "tiny"], "level 9 is out of range: choose levels 1-6", None),
    ("mlvgm.quantify", ["--config", "{work}/garbage.json"], "garbage.json is not valid JSON", None),
    ("mlvgm.quantify", ["--checkpoint", "{work}/text.pkl"], "the shapes generator takes no checkpoint: drop", None),
    # mlvgm.grid (tests/mlvgm/test_cli.py has the value checks)
    ("mlvgm.grid", ["--out", "{work}/g.png", "--anchor", "2"], "did you mean --anchors", None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--seed", "-1"], "--seed must be >= 0", None),
    # mlvgm.experiments
    ("mlvgm.experiments", ["table9", "--out", "{work}/paper"], "unknown experiment 'table9': choose one of", None),
    ("mlvgm.experiments", ["table2", "--budgte", "5"], "unknown option '--budgte': did you mean --budget", None),
    ("mlvgm.experiments", ["table2", "--seeds", "-1", "--out", "{work}/paper"], "--seeds must be >= 0", None),
    ("mlvgm.experiments", ["table2", "--rows", "synth,ml", "--out", "{work}/paper"], "--rows must be some of", None),
    ("mlvgm.experiments", ["table2", "--out", "{work}/text.pkl/paper", "--runs", "{work}/runs"], "text.pkl", None),
    ("mlvgm.grid", ["--out", "{work}/folder.png"], "folder.png is a folder: give a file name", None),
    # mlvgm.zoo.train and mlvgm.zoo.evidence
    ("mlvgm.zoo.train", ["--stpes", "5", "--out", "{work}/z"], "did you mean --steps", None),
    ("mlvgm.zoo.train", ["--resolution", "48", "--out", "{work}/z"], "--resolution must be 32 or 64", None),
    ("mlvgm.zoo.train", ["--out", "{work}/text.pkl/z"], "text.pkl is a file, not a folder", None),
    ("mlvgm.zoo.evidence", ["--out", "{work}/e", "--generator", "embedded:weights={work}/text.pkl"],
     "JSON config beside them", None),
    ("mlvgm.zoo.evidence", ["--out", "{work}/e", "--temperatures", "0,1"], "--temperatures must be in (0, 2]", None),
    ("mlvgm.zoo.evidence", ["--out", "{work}/e", "--generator", "shapes"], "is not an embedded generator", None),
    ("mlvgm.zoo.evidence", ["--out", "{work}/e", "--baseline", "bigbigan:x"],
     "--baseline bigbigan:x is not an embedded", None),
    ("mlvgm.zoo.evidence", ["--out", "{work}/e", "--images", "3"], "--images must be at least 4", None),
    ("mlvgm.zoo.control", ["--out", "{work}/c", "--level", "0"], "--level must be in [1, 5]", None),
    ("mlvgm.zoo.control", ["--out", "{work}/c", "--runs", "{work}/text.pkl/r"], "text.pkl is a file, not a folder",
     None),
    ("mlvgm.zoo.train", ["--likelihood", "laplace", "--out", "{work}/z"], "--likelihood must be one of", None),
    ("mlvgm.zoo.train", ["--level_kl_weights", "1,50", "--out", "{work}/z"], "--level_kl_weights must be 5 weights",
     None),
    ("mlvgm.zoo.train", ["--sigma_x", "5", "--out", "{work}/z"], "--sigma_x must be 0 (learned) or in", None),
    ("mlvgm.zoo.train", ["--free_nats", "8,8", "--out", "{work}/z"], "--free_nats must be 5 values", None),
    ("mlvgm.zoo.train", ["--groups", "3", "--out", "{work}/z"], "--groups must be 1 or 2", None),
    ("mlvgm.zoo.train", ["--progressive", "5000", "--out", "{work}/z"], "--progressive must be 0 (off) or a step",
     None),
    ("mlvgm.grid", ["--out", "{work}/text.pkl/g.png"], "text.pkl is a file, not a folder", None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "stylegan2:{work}/text.pkl"], "not a network pickle",
     None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "bigbigan:{work}/none.pth"], "none.pth", None),
    # mlvgm.data.export
    ("mlvgm.data.export", ["--n", "3", "--out", "{work}/ds", "--qualty", "5"], "did you mean --quality", None),
    ("mlvgm.data.export", ["--n", "3", "--out", "{work}/ds", "--quality", "0"], "JPEG quality must be an integer",
     None),
    ("mlvgm.data.export", ["--n", "3", "--out", "{work}/ds", "--seed", "-2"], "--seed must be >= 0", None),
    ("mlvgm.data.export", ["--n", "3", "--out", "{work}/existing"], "already exists: choose a new --out, or pass",
     None),
    ("mlvgm.data.export", ["--n", "3", "--out", "{work}/text.pkl/ds"], "is a file, not a folder", None),
    ("mlvgm.data.export", ["--n", "3", "--out", "{work}/ds", "--generator", "stylegan2:{work}/text.pkl"],
     "not a network pickle", None),
    # issue 27: files that describe more than they hold, special files, deep JSON, non-finite numbers
    ("mlvgm.train", ["--views", "learned", "--walkers", "{work}/walkers_hidden.safetensors", "--out", "{work}/new"],
     "walkers_hidden.safetensors does not match its description walkers_hidden.json: tensor", None),
    ("mlvgm.train", ["--views", "learned", "--walkers", "{work}/walkers_nan.safetensors", "--out", "{work}/new"],
     "tensor 'walkers.2.p.0.weight' holds NaN or infinite values", None),
    ("mlvgm.train", ["--views", "learned", "--walkers", "{work}/walkers_units.safetensors", "--out", "{work}/new"],
     "walkers_units.json: units[1] must be a list of level indices", None),
    ("mlvgm.train", ["--views", "learned", "--walkers", "{work}/walkers_deep.safetensors", "--out", "{work}/new"],
     "walkers_deep.json is nested too deeply", None),
    ("mlvgm.train", ["--views", "learned", "--walkers", "{work}/fifo.safetensors", "--out", "{work}/new"],
     "fifo.safetensors is not a regular file", fifo_walkers),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "embedded:weights={work}/embedded_wide.safetensors"],
     "embedded_wide.safetensors does not fit the architecture in its JSON", None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "embedded:weights={work}/embedded_nan.safetensors"],
     "tensor 'out.bias' holds NaN or infinite values", None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "embedded:weights={work}/embedded_type.safetensors"],
     "embedded_type.json: hvae: resolution must be an integer, got '16'", None),
    ("mlvgm.zoo.evidence", ["--out", "{work}/e", "--generator", "embedded:weights={work}/embedded_deep.safetensors"],
     "embedded_deep.json is nested too deeply", None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "embedded:weights={work}/fifo.safetensors"],
     "fifo.safetensors is not a regular file", fifo_embedded),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "embedded:temperature=nan"],
     "option temperature of generator 'embedded' must be a finite number", None),
    ("mlvgm.grid", ["--out", "{work}/g.png", "--generator", "stylegan2:{work}/deep.pkl"],
     "deep.pkl nests objects more than 256 deep", None),
    ("mlvgm.train", ["--config", "{work}/fifo.json", "--out", "{work}/new"], "fifo.json is not a regular file",
     fifo_config),
    ("mlvgm.train", ["--config", "{work}/deep.json", "--out", "{work}/new"], "deep.json is nested too deeply", None),
    ("mlvgm.quantify", ["--config", "{work}/nan.json"], "nan.json is not valid JSON (NaN is not a JSON number)", None),
    ("mlvgm.train", ["--budget_minutes", "nan", "--out", "{work}/new"],
     "--budget_minutes must be a finite number, got 'nan'", None),
    ("mlvgm.quantify", ["--gamma", "inf"], "--gamma must be a finite number, got 'inf'", None),
    ("mlvgm.train", ["--view_sigma", "1,nan", "--out", "{work}/new"], "--view_sigma must be a finite number", None),
    ("mlvgm.train", ["--generator", "bigbigan", "--checkpoint", "{work}/deflated.pth", "--out", "{work}/new"],
     "is compressed (torch.save stores records uncompressed", None),
    ("mlvgm.train", ["--generator", "bigbigan", "--checkpoint", "{work}/fifo.pth", "--out", "{work}/new"],
     "checkpoint {work}/fifo.pth is not a regular file", fifo_checkpoint),
    ("mlvgm.train", ["--source", "imagefolder", "--data", "{work}/bomb", "--out", "{work}/new"],
     "huge.png claims more than 89,478,485 pixels", None),
    ("mlvgm.train", ["--source", "imagefolder", "--data", "{work}/images", "--crop", "32", "--out", "{work}/new"],
     "3.png is not a regular file", fifo_image),
    ("mlvgm.train", ["--source", "imagefolder", "--data", "{work}/loop", "--batch_size", "2", "--out", "{work}/new"],
     "has 1 images, fewer than one global batch", symlink_loop),
    # bench.compare
    ("bench.compare", ["{work}/bench.json", "--baseline", "{work}/b.json", "--tolerence", "0.1"],
     "did you mean --tolerance", None),
    ("bench.compare", ["{work}/bench.json", "--baseline", "{work}/b.json", "--tolerance", "x"],
     "--tolerance must be a number, got 'x'", None),
    ("bench.compare", ["{work}/none.json", "--baseline", "{work}/base.json"],
     "none.json does not exist: give the file pytest --benchmark-json wrote", None),
    ("bench.compare", ["{work}/folder", "--baseline", "{work}/base.json"],
     "cannot read benchmark JSON", None),
    ("bench.compare", ["{work}/garbage.json", "--baseline", "{work}/base.json"],
     "is not JSON (Expecting property name", None),
    ("bench.compare", ["{work}/not_list.json", "--baseline", "{work}/base.json"], "no list of 'benchmarks'", None),
    ("bench.compare", ["{work}/bad_entries.json", "--baseline", "{work}/base.json"],
     "benchmark 0 lacks a name or its median stats", None),
    ("bench.compare", ["{work}/bench.json", "--baseline", "{work}/base.json"],
     "is not a baseline of schema 1: rewrite it with --write_baseline", None),
    ("bench.compare", ["{work}/bench.json", "--baseline", "{work}/folder"],
     "cannot read baseline", None),
    ("bench.compare", ["{work}/bench.json", "--baseline", "{work}/folder.json", "--write_baseline"],
     "folder.json is a folder: give a file name", None),
    ("bench.compare", ["{work}/bench.json", "--baseline", "{readonly}/b.json", "--write_baseline"],
     "cannot write in folder", None),
    # bench.figure5
    ("bench.figure5", ["{work}/bench.json", "--outt", "{work}/fig"], "did you mean --out", None),
    ("bench.figure5", ["{work}/bad_entries.json", "--out", "{work}/fig"], "benchmark 0 lacks a name", None),
    ("bench.figure5", ["{work}/no_median.json", "--out", "{work}/fig"], "benchmark 0 lacks a name or its median",
     None),
    ("bench.figure5", ["{work}/folder.json", "--out", "{work}/fig"], "cannot read benchmark JSON", None),
    ("bench.figure5", ["{work}/bench.json", "--out", "{work}/text.pkl"], "is a file, not a folder", None),
    ("bench.figure5", ["{work}/bench.json", "--out", "{readonly}/fig"], "cannot write in folder", None),
    # bench.kernels.report
    (REPORT, [], "the following arguments are required: BENCH_JSON", None),
    (REPORT, ["{work}/kernels.json", "--md"], "unknown option '--md'", None),
    (REPORT, ["{work}/text.pkl"], "is not a .json file: give the JSON pytest --benchmark-json wrote", None),
    (REPORT, ["{work}/none.json"], "none.json does not exist: give the file pytest --benchmark-json wrote", None),
    (REPORT, ["{work}/folder.json"], "cannot read benchmark JSON", None),
    (REPORT, ["{work}/garbage.json"], "is not JSON", None),
    (REPORT, ["{work}/not_list.json"], "no list of 'benchmarks'", None),
    (REPORT, ["{work}/bad_entries.json"], "benchmark 0 lacks a name or its median/min/max stats", None),
    (REPORT, ["{work}/kernels.json"], "kernels.md is a folder, where the tables would go",
     kernels_md_is_a_folder),
    # bench/gpu_check.py
    ("bench.gpu_check", ["--smok", "--out", "{work}/gc"], "did you mean --smoke", None),
    ("bench.gpu_check", ["--smoke", "maybe", "--out", "{work}/gc"], "--smoke must be true or false", None),
    ("bench.gpu_check", ["--smoke"], "--out is required", None),
    ("bench.gpu_check", ["--smoke", "--out", "{work}/text.pkl/gc"], "is a file, not a folder: choose another --out",
     None),
    ("bench.gpu_check", ["--smoke", "--out", "{readonly}/gc"], "cannot write in folder", None),
]  # fmt: skip


def _id(case) -> str:
    module, argv = case[0], case[1]
    words = [a.replace("{work}/", "").replace("{readonly}", "readonly") for a in argv]
    return f"{module.split('.')[-1]}:{' '.join(words)}" + (f":{case[3].__name__}" if case[3] else "")


@pytest.mark.parametrize(
    ("module", "argv", "message", "damage"),
    [c if hasattr(c, "marks") else pytest.param(*c, id=_id(c)) for c in CASES],  # pytest.param: as written
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    module, argv, message, damage, work, tmp_path, capsys, read_only_folder
):
    if damage is not None:
        damage(work)
    readonly = read_only_folder() if any("{readonly}" in a for a in argv) else tmp_path
    argv = [a.format(work=work, readonly=readonly) for a in argv]
    before = snapshot(work)
    code, _, err = call(module, argv, capsys)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"{PROGS[module]}: error: ") and message.format(work=work) in lines[0], lines[0]
    assert snapshot(work) == before
    if readonly != tmp_path:
        assert not any((readonly / name).exists() for name in ("run", "q", "b.json", "fig", "gc"))


def test_the_corpus_reaches_every_entry_point_at_least_twice():
    counts = {module: 0 for module in PROGS}
    for case in CASES:
        counts[case.values[0] if hasattr(case, "marks") else case[0]] += 1
    assert min(counts.values()) >= 2 and sum(counts.values()) >= 30, counts


def test_the_run_of_the_corpus_evaluates_when_nothing_is_damaged(work, capsys):
    """The damaged-run cases fail because of their damage: the same run, undamaged, evaluates."""
    code, out, err = call("mlvgm.evaluate", ["--run", str(work / "run"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert (work / "run" / "probes.csv").exists() and "evaluating" in out


def test_write_baseline_replaces_a_damaged_baseline(work, capsys):
    """--write_baseline is the fix the damaged-baseline error names: it must work on that very file."""
    argv = [str(work / "bench.json"), "--baseline", str(work / "base.json"), "--write_baseline"]
    code, out, err = call("bench.compare", argv, capsys)
    assert code == 0, err
    assert "is not a readable baseline: --write_baseline replaces it" in out
    assert json.loads((work / "base.json").read_text())["schema"] == 1
    assert call("bench.compare", argv[:3], capsys)[0] == 0  # and is read back
