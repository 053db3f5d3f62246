"""Issue 27: the generator and walker loaders are bounded by the file they read. A compressed zip record, a
width edited in a JSON, a NaN weight, a FIFO where a file goes, a pickle nested past any network: each is one
InputError line naming the file (and the tensor), before the loader allocates what the file does not hold.

The memory side (that the refusal costs the file, not the network it describes) is checked in a capped child
by test_loader_limits.py; here each refusal's message and the loads that must still work."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import pytest
import torch
from test_bigbigan import SMALL as BIGBIGAN_SMALL
from test_bigbigan import random_reference_state
from test_safe_pickle import dump, mirror

from mlvgm.errors import InputError
from mlvgm.generators import load_generator
from mlvgm.generators.bigbigan import load_bigbigan
from mlvgm.generators.checks import check_finite, check_zip_records
from mlvgm.generators.embedded import load_embedded, save_weights
from mlvgm.generators.hvae import Decoder, HVAEConfig
from mlvgm.generators.safe_pickle import MAX_DEPTH, safe_load_pickle
from mlvgm.generators.stylegan2 import StyleGAN2
from mlvgm.walkers import LevelWalkers

STYLEGAN2_SMALL = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=64, channel_max=8))  # fmt: skip
HVAE_SMALL = HVAEConfig(resolution=16, widths=((16, 8), (8, 8), (4, 8)), levels=((4, 2), (8, 1)),
                        level_names=("coarse", "fine"))  # fmt: skip


def deflate(path, out) -> None:
    """`path`'s zip records re-packed compressed, as a hand-made .pth could be."""
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as w:
        for info in z.infolist():
            w.writestr(info.filename, z.read(info.filename))


# --- zip records --------------------------------------------------------------------------------------


def test_a_compressed_zip_record_is_refused_before_torch_inflates_it(tmp_path):
    """4 MB of deflated zeros would be 4 GB once torch's reader inflates the record: refused by the header."""
    state = random_reference_state(BIGBIGAN_SMALL)
    torch.save(state, tmp_path / "stored.pth")
    assert isinstance(load_bigbigan(tmp_path / "stored.pth", **BIGBIGAN_SMALL), torch.nn.Module)  # torch stores
    deflate(tmp_path / "stored.pth", tmp_path / "deflated.pth")
    with pytest.raises(InputError, match=r"deflated\.pth: zip record '.*' is compressed") as error:
        load_bigbigan(tmp_path / "deflated.pth", **BIGBIGAN_SMALL)
    assert "\n" not in str(error.value)


def test_a_zip_record_larger_than_its_file_is_refused(tmp_path):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data/0", b"\0" * 1000)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")  # the central directory's sizes are what zip readers trust
    data[central + 20 : central + 28] = (10**9).to_bytes(4, "little") * 2
    with pytest.raises(InputError, match="claims 1,000,000,000 bytes"):
        check_zip_records(bytes(data), where="x", fix="y")
    check_zip_records(b"\x80\x02 not a zip", where="x", fix="y")  # legacy torch.save files pass to torch


def test_a_compressed_storage_blob_inside_a_pickle_is_refused(tmp_path):
    from mlvgm.generators.safe_pickle import _load_storage_bytes

    buffer = io.BytesIO()
    torch.save(torch.zeros(10).untyped_storage(), buffer)
    deflate(io.BytesIO(buffer.getvalue()), out := io.BytesIO())
    assert _load_storage_bytes(buffer.getvalue()) is not None
    with pytest.raises(InputError, match=r"a tensor storage in the pickle: zip record .* is compressed"):
        _load_storage_bytes(out.getvalue())


# --- non-finite weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_bigbigan_weights_that_are_not_finite_are_refused_naming_file_and_tensor(tmp_path, value):
    state = random_reference_state(BIGBIGAN_SMALL)
    state["blocks.1.0.conv1.weight"][0, 0, 0, 0] = value
    torch.save(state, tmp_path / "nan.pth")
    with pytest.raises(InputError, match=r"nan\.pth: tensor 'blocks\.1\.0\.conv1\.weight' holds NaN or infinite"):
        load_bigbigan(tmp_path / "nan.pth", **BIGBIGAN_SMALL)


def test_bigbigan_statistics_that_fold_to_nan_are_refused(tmp_path):
    """Finite numbers can still fold to NaN: a negative stored variance under the square root."""
    state = random_reference_state(BIGBIGAN_SMALL)
    state["output_layer.0.stored_var"][0] = -1.0
    torch.save(state, tmp_path / "var.pth")
    with pytest.raises(InputError, match=r"BigBiGAN weights folded from .*var\.pth: tensor 'output_scale'"):
        load_bigbigan(tmp_path / "var.pth", **BIGBIGAN_SMALL)


def test_stylegan2_weights_that_are_not_finite_are_refused_naming_file_and_tensor(tmp_path):
    torch.manual_seed(0)
    g = StyleGAN2(**STYLEGAN2_SMALL)
    with torch.no_grad():
        g.mapping.fc1.weight[0, 0] = float("nan")
    record = mirror(g, "Generator")
    record._init_kwargs = STYLEGAN2_SMALL
    path = dump(tmp_path / "nan.pkl", {"G_ema": record})
    with pytest.raises(InputError, match=r"network pickle .*nan\.pkl: tensor 'mapping\.fc1\.weight' holds NaN"):
        load_generator(f"stylegan2:{path}")


def test_check_finite_reads_large_tensors_in_chunks():
    x = torch.zeros(3 * 2**24 + 5)
    check_finite([("x", x)], where="w", fix="f")
    x[-1] = float("-inf")
    with pytest.raises(InputError, match="w: tensor 'x' holds NaN or infinite values: f"):
        check_finite([("x", x)], where="w", fix="f")
    check_finite([("i", torch.zeros(3, dtype=torch.int64))], where="w", fix="f")  # integers are always finite


# --- nesting in pickles --------------------------------------------------------------------------------------


def nested(depth: int) -> list:
    x: list = []
    for _ in range(depth):
        x = [x]
    return x


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 100_000])
def test_a_pickle_nested_past_any_network_is_one_line(tmp_path, depth):
    """A list nested 100,000 deep is 200 kB of opcodes; unrefused, some walk or repr of it overflows the stack."""
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x04" + b"]" * depth + b"a" * (depth - 1) + b".")  # EMPTY_LIST x depth, APPEND x depth-1
    with pytest.raises(InputError, match=f"nests objects more than {MAX_DEPTH} deep"):
        safe_load_pickle(path)


def test_nesting_within_the_cap_still_loads(tmp_path):
    path = tmp_path / "ok.pkl"
    path.write_bytes(pickle.dumps({"G_ema": nested(MAX_DEPTH - 3)}, protocol=4))
    assert isinstance(safe_load_pickle(path), dict)


# --- special files ------------------------------------------------------------------------------------------


def fifo(path):
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("spec", ["stylegan2:{p}/x.pkl", "bigbigan:{p}/x.pth", "embedded:weights={p}/x.safetensors"])
def test_a_fifo_given_as_weights_is_one_line_not_a_hang(tmp_path, spec):
    """open() on a FIFO blocks until a writer comes: every loader checks for a regular file first."""
    for name in ("x.pkl", "x.pth", "x.safetensors"):
        fifo(tmp_path / name)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(InputError, match="is not a regular file"):
        load_generator(spec.format(p=tmp_path))


def test_a_fifo_beside_the_embedded_weights_is_one_line(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_weights(Decoder(HVAE_SMALL), {"hvae": HVAE_SMALL.to_dict()}, path)
    path.with_suffix(".json").unlink()
    fifo(path.with_suffix(".json"))
    with pytest.raises(InputError, match=r"w\.json is not a regular file"):
        load_embedded(path)


# --- the embedded weights ---------------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_weights(Decoder(HVAE_SMALL), {"hvae": HVAE_SMALL.to_dict(), "temperature": 0.9}, path)
    return path


def edit_json(path, change) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    change(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))


def test_embedded_weights_load(embedded):
    assert load_embedded(embedded).temperature == 0.9


def test_a_width_edited_in_the_json_is_refused_by_the_header_before_building(embedded, monkeypatch):
    """One number in the JSON would build a network the file does not hold: the safetensors header is
    compared with the architecture built on the meta device, and nothing is allocated."""
    built, real_init = [], Decoder.__init__

    def spy(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the device the Decoder's tensors go to
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Decoder, "__init__", spy)
    edit_json(embedded, lambda m: m["hvae"]["widths"].__setitem__(1, [8, 4096]))
    with pytest.raises(InputError, match=r"w\.safetensors does not fit the architecture in its JSON: tensor .* has "
                                         r"shape \(8,\), the JSON's architecture \(2048,\)"):  # fmt: skip
        load_embedded(embedded)
    assert built == ["meta"]  # the only Decoder built was the meta one


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m["hvae"].__setitem__("resolution", "16"), "hvae: resolution must be an integer, got '16'"),
        (lambda m: m["hvae"].__setitem__("widths", [[16]]), r"widths\[0\] must be a pair"),
        (lambda m: m["hvae"].__setitem__("widths", [[16, 10**9]]), "channels must be between 1 and 4096"),
        (lambda m: m["hvae"].__setitem__("resolution", 10**6), "resolution must be between 1 and 1024"),
        (lambda m: m["hvae"].__setitem__("levels", [[3, 1]] * 2), "latent level at 3 px has no width"),
        (lambda m: m["hvae"].__setitem__("level_names", [1, 2]), "level_names must be strings"),
        (lambda m: m["hvae"].__setitem__("widths", [[16, 8]] * 10**4), "its length must be between 1 and 32"),
        (lambda m: m.__setitem__("hvae", []), "hvae must be a JSON object"),
        (lambda m: m.__setitem__("temperature", 7), "temperature must be between"),
        (lambda m: m.__setitem__("temperature", "hot"), "temperature must be a number"),
        (lambda m: m.pop("hvae"), "no 'hvae' architecture"),
    ],
)
def test_wrong_types_and_ranges_in_the_embedded_json_are_one_line(embedded, change, match):
    edit_json(embedded, change)
    with pytest.raises(InputError, match=match) as error:
        load_embedded(embedded)
    assert "\n" not in str(error.value) and "w.json" in str(error.value)


@pytest.mark.parametrize("text", ['{"hvae": ' * 100_000 + "1" + "}" * 100_000, '{"hvae": {}, "temperature": NaN}'])
def test_deep_or_non_finite_embedded_json_is_one_line(embedded, text):
    embedded.with_suffix(".json").write_text(text)
    with pytest.raises(InputError, match=r"w\.json is (nested too deeply|not valid JSON \(NaN)"):
        load_embedded(embedded)


def test_non_finite_embedded_weights_are_refused(embedded):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(embedded))
    tensors["out.weight"][0, 0, 0, 0] = float("nan")
    save_file(tensors, str(embedded))
    with pytest.raises(InputError, match=r"embedded weights .*w\.safetensors: tensor 'out\.weight' holds NaN"):
        load_embedded(embedded)


# --- walkers -----------------------------------------------------------------------------------------------


class Levels(torch.nn.Module):
    level_dims = (4, 4, 6)
    resolution = 8

    def forward(self, latents):
        return torch.zeros(latents[0].shape[0], 3, 8, 8)


@pytest.fixture
def walkers(tmp_path):
    return LevelWalkers(Levels(), [1, [2, 3]], hidden=5).save(tmp_path / "walkers")


def test_a_hidden_width_edited_in_the_json_is_refused_before_building(walkers, monkeypatch):
    """hidden 10**6 over a unit of 10 would be 80 MB of weights from a file of 1 kB (10**8: 8 GB)."""
    edit_json(walkers, lambda m: m.__setitem__("hidden", 10**8))
    monkeypatch.setattr(LevelWalkers, "__init__", lambda *a, **k: pytest.fail("built before the shapes matched"))
    with pytest.raises(InputError, match=r"tensor 'walkers.0.p.0.bias' has shape \(5,\), the description gives "
                                         r"\(100000000,\)"):  # fmt: skip
        LevelWalkers.load(walkers, Levels())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.__setitem__("level_dims", "4,4,6"), "level_dims must be a list"),
        (lambda m: m.__setitem__("units", [[0], [1, 7]]), r"units\[1\] must be a list of level indices 0..2"),
        (lambda m: m.__setitem__("units", [[0], [0, 1]]), "level 0 is in two units"),
        (lambda m: m.__setitem__("units", 3), "units must be a list"),
        (lambda m: m.__setitem__("units", [[0], ["1"]]), r"units\[1\] must be a list of level indices"),
        (lambda m: m.__setitem__("hidden", 0), "hidden must be at least 1"),
        (lambda m: m.__setitem__("hidden", 2.5), "hidden must be an integer"),
        (lambda m: m.__setitem__("single", "yes"), "single must be true or false"),
        (lambda m: m.__setitem__("single", True), "single walkers must have one unit of every level"),
        (lambda m: m.__setitem__("format", 7), "format must be a string"),
        (lambda m: m.pop("single"), "has no 'single'"),
    ],
)
def test_wrong_types_and_ranges_in_the_walkers_json_are_one_line(walkers, change, match):
    edit_json(walkers, change)
    with pytest.raises(InputError, match=match) as error:
        LevelWalkers.load(walkers, Levels())
    assert "\n" not in str(error.value)


def test_walkers_json_nested_deeply_or_with_nan_is_one_line(walkers):
    walkers.with_suffix(".json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"walkers description .* is nested too deeply"):
        LevelWalkers.load(walkers, Levels())
    walkers.with_suffix(".json").write_text('{"hidden": NaN}')
    with pytest.raises(InputError, match="is not valid JSON"):
        LevelWalkers.load(walkers, Levels())


def test_non_finite_walker_weights_are_refused(walkers):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(walkers))
    tensors["walkers.1.p.2.bias"][3] = float("inf")
    save_file(tensors, str(walkers))
    with pytest.raises(InputError, match=r"walkers file .*walkers\.safetensors: tensor 'walkers\.1\.p\.2\.bias' holds"):
        LevelWalkers.load(walkers, Levels())


def test_a_fifo_as_walkers_is_one_line(walkers):
    walkers.unlink()
    fifo(walkers)
    with pytest.raises(InputError, match=r"walkers file .* is not a regular file"):
        LevelWalkers.load(walkers, Levels())
    walkers.unlink()
    walkers.write_bytes(b"")
    walkers.with_suffix(".json").unlink()
    fifo(walkers.with_suffix(".json"))
    with pytest.raises(InputError, match=r"walkers\.json is not a regular file"):
        LevelWalkers.load(walkers, Levels())


def test_walkers_with_default_hidden_and_single_still_round_trip(tmp_path):
    g = Levels()
    for kwargs in ({}, {"single": True}):
        saved = LevelWalkers(g, **kwargs).save(tmp_path / "w")
        loaded = LevelWalkers.load(saved, g)
        assert loaded.single == kwargs.get("single", False) and loaded.hidden is None


# --- a small mutation run over the safetensors + JSON pairs -------------------------------------------------

JSON_VALUES = [None, True, -1, 0, 1, 2, 3, 10**12, 2.5, -0.0, 1e308, "", "x", [], [0], [[1, 2]], {}, {"a": 1}]


def mutate_pair(path, rng) -> str:
    """Damage one of the pair at random: bytes of the tensors file (flips, a cut, a grown header length) or
    one value anywhere in the JSON replaced by a value of another type or size. Returns what was done."""
    import random

    assert isinstance(rng, random.Random)
    if rng.random() < 0.5:
        data = bytearray(path.read_bytes())
        kind = rng.choice(["flip", "cut", "header"])
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == "cut":
            del data[rng.randrange(len(data)) :]
        else:  # the 8-byte header length, which safetensors must check against the file
            data[:8] = rng.choice([0, 1, 2**31, 2**63 - 1, len(data)]).to_bytes(8, "little")
        path.write_bytes(bytes(data))
        return kind
    meta = json.loads(path.with_suffix(".json").read_text())
    holders, todo = [], [meta]
    while todo:  # every (container, key) in the JSON
        item = todo.pop()
        keys = list(item) if isinstance(item, dict) else range(len(item)) if isinstance(item, list) else []
        for key in keys:
            holders.append((item, key))
            todo.append(item[key])
    holder, key = rng.choice(holders)
    holder[key] = rng.choice(JSON_VALUES)
    path.with_suffix(".json").write_text(json.dumps(meta))
    return f"json {key!r}"


@pytest.mark.parametrize("target", ["walkers", "embedded"])
def test_mutated_walkers_and_embedded_weights_load_or_are_one_line(tmp_path, target):
    """300 seeded mutations of each pair: the only outcomes are a load and an InputError line (any other
    exception, a hang or a large allocation fails the run; test_loader_limits caps the worst by hand)."""
    import random
    import shutil

    torch.manual_seed(0)
    if target == "walkers":
        original = LevelWalkers(Levels(), [1, [2, 3]], hidden=5).save(tmp_path / "orig")

        def load(path):
            return LevelWalkers.load(path, Levels())
    else:
        original = tmp_path / "orig.safetensors"
        save_weights(Decoder(HVAE_SMALL), {"hvae": HVAE_SMALL.to_dict(), "temperature": 0.9}, original)
        load = load_embedded
    rng, outcomes = random.Random(27), {}
    for i in range(300):
        path = tmp_path / f"case{i % 2}.safetensors"
        shutil.copy(original, path)
        shutil.copy(original.with_suffix(".json"), path.with_suffix(".json"))
        what = mutate_pair(path, rng)
        try:
            load(path)
            outcome = "loaded"
        except InputError as error:
            assert "\n" not in str(error), (i, what, str(error))
            outcome = "InputError"
        except Exception as error:  # noqa: BLE001 -- the failure being tested for
            pytest.fail(f"case {i} ({what}) raised {type(error).__name__}: {error}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("InputError", 0) > 100, outcomes
