"""The checkpoint loaders' work and memory are bounded by the file: each hostile file below loads or is
refused with one InputError line in seconds, in a process whose address space is capped.

Each file is small; on a loader without the bounds, each one hangs (a shared-reference walk of 2**40
steps), allocates gigabytes, or escapes as another exception (ZeroDivisionError, TypeError, MemoryError,
RuntimeError). They run in a child process with a memory cap and a timeout, so such a loader fails the
test instead of taking the machine down with it.
"""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_safe_pickle import Persistent, dump, mirror

from mlvgm.errors import InputError
from mlvgm.generators.safe_pickle import TorchModuleRecord, _plain, module_state_dict
from mlvgm.generators.stylegan2 import StyleGAN2

ROOT = Path(__file__).resolve().parents[3]
HEADROOM = 1 << 30  # address space the child may add after importing torch: 1 GiB
TIMEOUT = 20  # seconds per file

SMALL = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
             mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=64, channel_max=8))  # fmt: skip

_CHILD = textwrap.dedent("""
    import json, resource, signal, sys, time
    from mlvgm.errors import InputError
    from mlvgm.generators import load_generator

    def timeout(signum, frame):
        raise TimeoutError("took too long")

    signal.signal(signal.SIGALRM, timeout)
    vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[1]), vm + int(sys.argv[1])))
    for spec in sys.argv[3:]:
        print(json.dumps({"spec": spec, "outcome": "started"}), flush=True)
        start = time.perf_counter()
        signal.alarm(int(sys.argv[2]))
        try:
            if spec.startswith("walkers:"):  # walkers for the shapes world, which loads in a few MB
                from mlvgm.walkers import LevelWalkers
                LevelWalkers.load(spec.partition(":")[2], load_generator("shapes"))
            else:
                load_generator(spec)
            outcome, message = "loaded", ""
        except InputError as exc:
            outcome, message = "InputError", str(exc)
        except BaseException as exc:
            outcome, message = type(exc).__name__, str(exc)[:300]
        signal.alarm(0)
        print(json.dumps({"spec": spec, "outcome": outcome, "message": message,
                          "seconds": time.perf_counter() - start}), flush=True)
""")


def load_in_child(specs: list[str]) -> dict[str, dict]:
    """load_generator(spec) for each spec, in one fresh process capped at its post-import size + HEADROOM,
    TIMEOUT seconds each: {spec: {"outcome": "loaded" | "InputError" | another exception's name, ...}}."""
    done = subprocess.run([sys.executable, "-c", _CHILD, str(HEADROOM), str(TIMEOUT), *specs], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT * len(specs) + 120)  # fmt: skip
    results = {}
    for line in done.stdout.splitlines():
        row = json.loads(line)
        results[row["spec"]] = row
    for row in results.values():  # the case the process died in
        if row["outcome"] == "started":
            row.update(outcome=f"the process died ({done.returncode})", message=done.stderr[-500:])
    return results


FILES: dict[str, object] = {}  # case -> function(folder) returning the spec to load


def case(function):
    FILES[function.__name__] = function
    return function


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    """Every case's file, loaded in one capped child (one torch import for all of them)."""
    folder = tmp_path_factory.mktemp("hostile")
    specs = {name: build(folder) for name, build in FILES.items()}
    results = load_in_child(list(specs.values()))
    return {name: results.get(spec, {"outcome": "never ran"}) for name, spec in specs.items()}


def assert_refused(outcomes: dict, name: str, message: str) -> None:
    result = outcomes[name]
    assert result["outcome"] == "InputError", result
    assert message in result["message"] and "\n" not in result["message"], result["message"]


def snapshot(folder: Path, init_kwargs: dict, name: str) -> str:
    """The spec of a G_ema pickle holding a small generator's weights under `init_kwargs`."""
    torch.manual_seed(0)
    g = StyleGAN2(**SMALL)
    record = mirror(g, "Generator")
    record._init_kwargs = init_kwargs  # as pickled: any keys, not only names a Python call accepts
    return f"stylegan2:{dump(folder / name, {'G_ema': record})}"


def raw_pickle(folder: Path, body: bytes, name: str) -> str:
    path = folder / name
    path.write_bytes(b"\x80\x04" + body + b".")
    return f"stylegan2:{path}"


def shared_list(depth: int) -> list:
    x: list = [0]
    for _ in range(depth):
        x = [x, x]  # pickled once per level (the memo), walked 2**depth times without one
    return x


@case
def shared_init_kwargs(folder: Path) -> str:
    return snapshot(folder, {**SMALL, "junk": shared_list(40)}, "shared-kwargs.pkl")


@case
def shared_modules(folder: Path) -> str:
    leaf = Persistent()
    leaf.w = torch.nn.Parameter(torch.zeros(1))
    for _ in range(40):
        parent = Persistent()
        parent.a, parent.b = leaf, leaf  # 2**40 paths to the leaf
        leaf = parent
    g_ema = type("Generator", (Persistent,), {})(**SMALL)
    g_ema.tree = leaf
    return f"stylegan2:{dump(folder / 'shared-modules.pkl', {'G_ema': g_ema})}"


UNFOLDS = "builds an object of more than 1,000,000 objects once shared references unfold"


def test_a_shared_reference_structure_is_refused_before_it_is_built(outcomes):
    """x = [x, x] nested 40 deep is 40 list opcodes; unfolded (any walk, repr or hash of it) 2**40 objects."""
    assert_refused(outcomes, "shared_init_kwargs", UNFOLDS)
    assert_refused(outcomes, "shared_modules", UNFOLDS)


def test_the_walks_after_loading_are_linear_in_the_objects_too():
    """Behind the opcode check: converting init_kwargs visits each shared object once, and a module held
    by two parents is refused at once (NVIDIA's networks never share one)."""
    deep = shared_list(60)
    plain = _plain({"junk": deep})
    assert plain["junk"][0] is plain["junk"][1]  # converted once, shared as in the file
    leaf = TorchModuleRecord()
    leaf.__setstate__({"_parameters": {"w": torch.zeros(1)}})
    for _ in range(60):
        parent = TorchModuleRecord()
        parent.__setstate__({"_modules": {"a": leaf, "b": leaf}})
        leaf = parent
    with pytest.raises(InputError, match=r"a\.b is a module the network already holds"):
        module_state_dict(leaf)


KWARGS = {  # case: (init_kwargs that differ from SMALL's, the message)
    "kwargs_huge_network": ({"img_resolution": 65536, "synthesis_kwargs": {"channel_base": 2**40,
                             "channel_max": 2**20}}, "StyleGAN2 state lacks tensor"),
    "kwargs_huge_z": ({"z_dim": 10**9},
                      "StyleGAN2 tensor 'mapping.fc0.weight' has shape (8, 8), expected (8, 1000000000)"),
    "kwargs_zero_channels": ({"img_resolution": 64, "synthesis_kwargs": {"channel_base": 32}},
                             "channel_base 32 gives 0 channels at 64 px"),
    "kwargs_list_features": ({"mapping_kwargs": {"num_layers": 2, "layer_features": [0]}},
                             "mapping layer_features must be a positive integer, got [0]"),
    "kwargs_resolution_2_70": ({"img_resolution": 2**70}, "img_resolution must be a power of two from 4 to 65536"),
    "kwargs_mapping_layers_1e9": ({"mapping_kwargs": {"num_layers": 10**9}},
                                  "mapping num_layers must be at most 64 (StyleGAN2's is 8), got 1000000000"),
    "kwargs_int_key": ({32: 1, "components": 2}, "unknown StyleGAN2 init_kwargs [32, 'components']"),
    "kwargs_string_clamp": ({"synthesis_kwargs": {"channel_base": 64, "conv_clamp": "x"}},
                            "StyleGAN2 init_kwargs do not describe a network (TypeError"),
}  # fmt: skip
for _name, (_change, _) in KWARGS.items():
    FILES[_name] = lambda folder, name=_name, change=_change: snapshot(folder, {**SMALL, **change}, f"{name}.pkl")


@pytest.mark.parametrize("name", list(KWARGS))
def test_init_kwargs_are_checked_against_the_tensors_before_anything_is_allocated(outcomes, name):
    """The architecture the kwargs describe is built on the meta device and compared with the file's
    tensors first: a 65536-px network with 2**20 channels costs nothing to refuse."""
    assert_refused(outcomes, name, KWARGS[name][1])


@case
def expanded_views(folder: Path) -> str:
    """A stride-0 view pickles as its one-element storage: a 2**20-wide network in a few kilobytes, which
    loading would allocate (4 TiB). Its shapes match its kwargs, so only the storage check catches it."""
    kwargs = {**SMALL, "z_dim": 2**20, "w_dim": 2**20}
    with torch.device("meta"):
        shapes = StyleGAN2(**kwargs)
    g_ema = type("Generator", (Persistent,), {})(**kwargs)
    for name, tensor in shapes.state_dict().items():
        owner = g_ema
        *parents, leaf = name.split(".")
        for part in parents:
            if part not in owner._modules:
                owner.add_module(part, Persistent())
            owner = owner._modules[part]
        owner.register_buffer(leaf, torch.zeros(1).expand(tensor.shape) if tensor.ndim else torch.zeros(()))
    path = dump(folder / "expanded.pkl", {"G_ema": g_ema})
    assert path.stat().st_size < 1_000_000
    return f"stylegan2:{path}"


def test_tensors_that_claim_more_than_their_storage_holds_are_refused(outcomes):
    assert_refused(outcomes, "expanded_views", "reuses the bytes of a smaller storage")


@case
def bytes8_2_50(folder: Path) -> str:
    return raw_pickle(folder, b"\x8e" + (2**50).to_bytes(8, "little") + b"abc", "bytes8.pkl")


@case
def unicode8_2_34(folder: Path) -> str:
    return raw_pickle(folder, b"\x8d" + (2**34).to_bytes(8, "little") + b"abc", "unicode8.pkl")


def test_a_length_past_the_end_of_the_file_is_refused_before_it_is_allocated(outcomes):
    """BINBYTES8 claiming 2**50 bytes: CPython's unpickler allocates a claim before reading it."""
    assert_refused(outcomes, "bytes8_2_50", "is not a complete pickle (expected 1125899906842624 bytes")
    assert_refused(outcomes, "unicode8_2_34", "is not a complete pickle (expected 17179869184 bytes")


@case
def memo_2_32(folder: Path) -> str:
    return raw_pickle(folder, b"}" + b"r" + (2**32 - 1).to_bytes(4, "little"), "memo.pkl")


def test_a_memo_slot_far_past_the_pickle_is_refused(outcomes):
    """LONG_BINPUT 2**32 - 1: the unpickler would grow its memo to 4 billion slots (32 GiB)."""
    assert_refused(outcomes, "memo_2_32", "puts memo slot 4294967295 of 0")


class HugeArray:
    """Pickles as `numpy.ndarray((2**33,), 'f8')`: the class named by the file, called with a shape."""

    def __reduce__(self):
        return (np.ndarray, ((2**33,), "f8"))


@case
def ndarray_call(folder: Path) -> str:
    path = folder / "ndarray.pkl"
    path.write_bytes(pickle.dumps({"G_ema": HugeArray()}, protocol=4))
    return f"stylegan2:{path}"


def test_a_pickle_cannot_call_numpy_ndarray(outcomes):
    assert_refused(outcomes, "ndarray_call", "refused to load a call of numpy.ndarray")


@case
def valid(folder: Path) -> str:
    return snapshot(folder, SMALL, "valid.pkl")


def test_a_valid_snapshot_still_loads_in_the_capped_child(outcomes):
    assert outcomes["valid"]["outcome"] == "loaded", outcomes["valid"]


# --- issue 27: zip records, and JSON side files that describe more than their tensors hold ----------------


@case
def compressed_pth(folder: Path) -> str:
    """A torch.save zip whose one storage record is 1.5 GiB of deflated zeros: a 7 MB file. torch's reader
    inflates a record in full before it looks at the pickle that names it."""
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buffer)
    path = folder / "compressed.pth"
    with zipfile.ZipFile(buffer) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        for info in z.infolist():
            if not info.filename.endswith("/data/0"):
                out.writestr(info.filename, z.read(info.filename))
                continue
            with out.open(info.filename, "w", force_zip64=True) as f:
                for _ in range(1536):
                    f.write(bytes(1 << 20))
    return f"bigbigan:{path}"


def test_a_compressed_zip_record_is_refused_before_it_inflates(outcomes):
    assert_refused(outcomes, "compressed_pth", "is compressed (torch.save stores records uncompressed")


@case
def embedded_wide(folder: Path) -> str:
    """Small weights whose JSON was edited to 4096 channels at every resolution: over 1 GiB of network."""
    from mlvgm.generators.embedded import save_weights
    from mlvgm.generators.hvae import Decoder, HVAEConfig

    config = HVAEConfig(resolution=16, widths=((16, 8), (8, 8), (4, 8)), levels=((4, 2), (8, 1)),
                        level_names=("a", "b"))  # fmt: skip
    path = folder / "wide.safetensors"
    save_weights(Decoder(config), {"hvae": {**config.to_dict(), "widths": [[16, 4096], [8, 4096], [4, 4096]]}}, path)
    return f"embedded:weights={path}"


def test_an_embedded_width_edited_in_the_json_costs_the_file_not_the_network(outcomes):
    assert_refused(outcomes, "embedded_wide", "does not fit the architecture in its JSON")


@case
def walkers_hidden(folder: Path) -> str:
    """Walkers of hidden width 8 whose JSON says 10**8: 6 GB per unit if built before the shapes are compared."""
    from mlvgm.generators import load_generator
    from mlvgm.walkers import LevelWalkers

    path = LevelWalkers(load_generator("shapes"), hidden=8).save(folder / "walkers")
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "hidden": 10**8}))
    return f"walkers:{path}"


def test_a_walkers_width_edited_in_the_json_costs_the_file_not_the_network(outcomes):
    assert_refused(outcomes, "walkers_hidden", "does not match its description walkers.json")
