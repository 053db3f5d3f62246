"""safe_pickle: NVIDIA network pickles are read as data; nothing from the file is imported or executed.

The fixtures are written in NVIDIA's real formats without NVIDIA's code. A persistent network pickles, as
in stylegan2-ada-pytorch's torch_utils/persistence.py, as REDUCE(torch_utils.persistence.
_reconstruct_persistent_obj, (meta,)) with meta = {type, version, module_src, class_name, state}; tensors
go through torch's own reduction (torch._utils._rebuild_tensor_v2 over torch.storage._load_from_bytes);
TensorFlow networks are dnnlib.tflib.network.Network objects with a {variables, static_kwargs, ...} state.
Pickle resolves those names at dump time, so stand-ins are registered in sys.modules only while dumping:
the loader then runs in a process where torch_utils and dnnlib do not exist, and every embedded source
creates a marker file if it is ever executed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import types
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch

from mlvgm.errors import InputError
from mlvgm.generators.safe_pickle import (
    FORMAT_PYTORCH,
    FORMAT_TENSORFLOW,
    PersistentRecord,
    TFNetworkRecord,
    TorchModuleRecord,
    UnsafePickleError,
    load_network_pickle,
    module_state_dict,
    safe_load_pickle,
)

# ---------------------------------------------------------------------------------------------------
# NVIDIA's names, as stand-ins that exist only while a fixture is being pickled.


def _reconstruct_persistent_obj(meta):
    raise AssertionError("the loader must never call NVIDIA's reconstruct function")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    pass


EasyDict.__module__ = "dnnlib.util"


class Network:
    """Pickles as dnnlib.tflib.network.Network does: NEWOBJ of the class, then BUILD with this state."""

    def __init__(self, name, static_kwargs, variables, components=None, src=""):
        self.state = dict(
            version=4,
            name=name,
            static_kwargs=static_kwargs,
            components=components or {},
            build_module_src=src,
            build_func_name=f"training.networks_stylegan2.{name}",
            variables=list(variables.items()),
        )

    def __getstate__(self):
        return self.state

    def __setstate__(self, state):
        raise AssertionError("the loader must never rebuild a TensorFlow network")


Network.__module__ = "dnnlib.tflib.network"

_FAKE_MODULES = {
    "torch_utils": {},
    "torch_utils.persistence": {"_reconstruct_persistent_obj": _reconstruct_persistent_obj},
    "dnnlib": {},
    "dnnlib.util": {"EasyDict": EasyDict},
    "dnnlib.tflib": {},
    "dnnlib.tflib.network": {"Network": Network},
}


@contextlib.contextmanager
def nvidia_names():
    assert not any(name in sys.modules for name in _FAKE_MODULES)
    for name, attributes in _FAKE_MODULES.items():
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name in _FAKE_MODULES:
            del sys.modules[name]


def dump(path, obj, protocol=4):
    with nvidia_names(), open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# ---------------------------------------------------------------------------------------------------
# A small generator laid out as stylegan2-ada-pytorch's training/networks.py lays out its modules.


class Persistent(torch.nn.Module):
    """Pickles as a @persistence.persistent_class instance: its source and __dict__ inside `meta`."""

    module_src = ""  # set by each test: code that creates a marker file if anyone runs it

    def __init__(self, **kwargs):
        super().__init__()
        self._init_args = ()
        self._init_kwargs = kwargs

    def __reduce__(self):
        meta = dict(
            type="class",
            version=6,
            module_src=Persistent.module_src,
            class_name=type(self).__name__,
            state=dict(self.__dict__),
        )
        return (_reconstruct_persistent_obj, (meta,))


def setup_filter():
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f / f.sum()


class FullyConnectedLayer(Persistent):
    def __init__(self, in_features, out_features, lr_multiplier=1.0, bias_init=0.0):
        super().__init__(in_features=in_features, out_features=out_features, lr_multiplier=lr_multiplier)
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features))
        self.bias = torch.nn.Parameter(torch.randn(out_features) + bias_init)
        self.weight_gain = lr_multiplier / np.sqrt(in_features)  # a numpy float64, as in NVIDIA's code


class SynthesisLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1):
        super().__init__(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim, resolution=resolution)
        self.register_buffer("resample_filter", setup_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = torch.nn.Parameter(torch.randn([]))
        self.bias = torch.nn.Parameter(torch.randn(out_channels))


class ToRGBLayer(Persistent):
    def __init__(self, in_channels, out_channels, w_dim):
        super().__init__(in_channels=in_channels, out_channels=out_channels, w_dim=w_dim)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = torch.nn.Parameter(torch.randn(out_channels))


class SynthesisBlock(Persistent):
    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels):
        super().__init__(in_channels=in_channels, out_channels=out_channels, resolution=resolution)
        self.register_buffer("resample_filter", setup_filter())
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim)  # architecture "skip": every block


class SynthesisNetwork(Persistent):
    def __init__(self, w_dim, img_resolution, img_channels, channels):
        super().__init__(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels)
        self.block_resolutions = [4 * 2**i for i in range(len(channels))]
        for i, res in enumerate(self.block_resolutions):
            block = SynthesisBlock(channels[i - 1] if i else 0, channels[i], w_dim, res, img_channels)
            setattr(self, f"b{res}", block)


class MappingNetwork(Persistent):
    def __init__(self, z_dim, w_dim, num_layers):
        super().__init__(z_dim=z_dim, w_dim=w_dim, num_layers=num_layers)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(z_dim if i == 0 else w_dim, w_dim, lr_multiplier=0.01))
        self.register_buffer("w_avg", torch.randn(w_dim))


class Generator(Persistent):
    def __init__(self, z_dim=8, w_dim=8, img_resolution=16, img_channels=3, channels=(8, 6, 4)):
        super().__init__(
            z_dim=z_dim,
            c_dim=0,
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            mapping_kwargs=EasyDict(num_layers=2),
            synthesis_kwargs=EasyDict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256),
        )
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, channels)
        self.mapping = MappingNetwork(z_dim, w_dim, num_layers=2)


class Discriminator(Persistent):
    """Not NVIDIA's discriminator: a persistent module holding plain torch modules and awkward tensors."""

    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(3, 2), torch.nn.Sequential(torch.nn.Linear(2, 2))])
        storage = torch.arange(12, dtype=torch.float32)
        self.register_buffer("view", storage[3:7])  # shares a storage, at an offset
        self.register_buffer("transposed", torch.randn(3, 5).t())  # not contiguous
        self.register_buffer("fp16", torch.randn(4).half())
        self.register_buffer("bf16", torch.randn(2, 2).bfloat16())
        self.register_buffer("count", torch.tensor([7, -3], dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False]))
        self.register_buffer("scratch", torch.ones(3), persistent=False)  # state_dict() leaves it out
        self.register_buffer("tagged", torch.randn(2))
        self.tagged.note = "a Python attribute: torch pickles it through _rebuild_from_type_v2"
        self.tagged_weight = torch.nn.Parameter(torch.randn(2))
        self.tagged_weight.note = "the same for a Parameter: _rebuild_parameter_with_state"
        self.table = np.arange(6, dtype=">f4").reshape(2, 3)  # big-endian, as data only
        self.fortran = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))


def training_snapshot(seed=0):
    """What stylegan2-ada-pytorch's training loop pickles."""
    torch.manual_seed(seed)
    G, G_ema, D = Generator(), Generator(), Discriminator()
    data = dict(training_set_kwargs=EasyDict(class_name="training.dataset.ImageFolderDataset", path="x.zip"))
    data.update(G=G, D=D, G_ema=G_ema, augment_pipe=None)
    return data


@pytest.fixture
def marker(tmp_path):
    """A file that appears only if code embedded in a fixture pickle runs."""
    path = tmp_path / "MARKER"
    Persistent.module_src = f"open({str(path)!r}, 'w').close()\n"
    yield path
    Persistent.module_src = ""


def assert_same_state_dict(got, expected):
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


# ---------------------------------------------------------------------------------------------------
# stylegan2-ada-pytorch pickles.


def test_the_embedded_source_would_create_the_marker(marker):
    exec(Persistent.module_src, {})  # what NVIDIA's loader does with module_src
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_generator_loads_as_a_flat_state_dict_without_running_its_source(tmp_path, marker, protocol):
    data = training_snapshot()
    path = dump(tmp_path / "snapshot.pkl", data, protocol)
    state = load_network_pickle(path)
    assert_same_state_dict(state.state_dict, data["G_ema"].state_dict())
    assert "synthesis.b4.const" in state.state_dict and "synthesis.b8.conv0.affine.bias" in state.state_dict
    assert "mapping.w_avg" in state.state_dict and "synthesis.b16.conv1.noise_const" in state.state_dict
    assert state.class_name == "Generator" and state.format == FORMAT_PYTORCH and state.init_args == ()
    assert state.keys == ("training_set_kwargs", "G", "D", "G_ema", "augment_pipe")
    assert state.init_kwargs == {
        "z_dim": 8,
        "c_dim": 0,
        "w_dim": 8,
        "img_resolution": 16,
        "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2},
        "synthesis_kwargs": {"channel_base": 64, "channel_max": 8, "num_fp16_res": 0, "conv_clamp": 256},
    }
    assert type(state.init_kwargs["mapping_kwargs"]) is dict  # EasyDicts become plain dicts
    assert state.source_sha256 == hashlib.sha256(Persistent.module_src.encode()).hexdigest()
    assert not any(p.requires_grad for p in state.state_dict.values())
    assert not marker.exists()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules  # nothing was imported


def test_g_and_d_with_plain_torch_modules_and_awkward_tensors(tmp_path, marker):
    data = training_snapshot()
    path = dump(tmp_path / "snapshot.pkl", data)
    assert_same_state_dict(load_network_pickle(path, "G").state_dict, data["G"].state_dict())
    d = load_network_pickle(path, "D").state_dict
    assert_same_state_dict(d, data["D"].state_dict())
    assert "scratch" not in d and "blocks.1.0.weight" in d
    assert d["view"].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 5])  # numpy: _reconstruct + BUILD, or protocol 5's _frombuffer
def test_records_keep_the_pickled_state_as_data(tmp_path, marker, protocol):
    data = training_snapshot()
    loaded = safe_load_pickle(dump(tmp_path / "snapshot.pkl", data, protocol))
    g = loaded["G_ema"]
    assert isinstance(g, PersistentRecord) and g.class_name == "Generator" and g.version == 6
    assert g.module_src == Persistent.module_src  # kept as text for reading
    fc = g.state["_modules"]["mapping"].state["_modules"]["fc0"]
    assert isinstance(fc.state["weight_gain"], np.float64) and fc.state["weight_gain"] == 1 / np.sqrt(8) * 0.01
    d = loaded["D"].state
    np.testing.assert_array_equal(d["table"], data["D"].table)
    assert d["table"].dtype == np.dtype(">f4")
    np.testing.assert_array_equal(d["fortran"], data["D"].fortran)
    blocks = d["_modules"]["blocks"]
    assert isinstance(blocks, TorchModuleRecord)
    assert blocks.class_path == "torch.nn.modules.container.ModuleList"
    assert blocks.state["_modules"]["0"].class_path == "torch.nn.modules.linear.Linear"
    assert list(module_state_dict(blocks)) == ["0.weight", "0.bias", "1.0.weight", "1.0.bias"]
    assert loaded["training_set_kwargs"] == {"class_name": "training.dataset.ImageFolderDataset", "path": "x.zip"}
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------
# Hostile files: refused by name, and nothing they ask for happens.


class Call:
    """Pickles as a call of `func(*args)`: what a malicious __reduce__ returns."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class Gadget:
    pass


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (lambda m: Call(os.system, (f"touch {m}",)), r"posix\.system"),
        (lambda m: Call(eval, (f"open({str(m)!r}, 'w')",)), r"builtins\.eval"),
        (lambda m: Call(subprocess.Popen, (["touch", str(m)],)), r"subprocess\.Popen"),
        (lambda m: Gadget(), r"test_safe_pickle\.Gadget"),
        (lambda m: Call(torch.load, (str(m),)), r"torch\.serialization\.load"),
    ],
)
def test_anything_outside_the_allowlist_is_refused_by_name(tmp_path, marker, payload, named):
    top = dump(tmp_path / "top.pkl", {"G_ema": payload(marker)})
    data = training_snapshot()
    data["G_ema"].mapping.fc0.sneaky = payload(marker)  # deep inside an otherwise valid network
    nested = dump(tmp_path / "nested.pkl", data)
    for path in (top, nested):
        with pytest.raises(UnsafePickleError, match=rf"refused to load {named}: .*may be malicious"):
            load_network_pickle(path)
    assert not marker.exists()


def test_torch_constants_are_admitted_and_other_torch_names_refused(tmp_path):
    path = tmp_path / "names.pkl"
    path.write_bytes(b"\x80\x02ctorch\nfloat16\nctorch\ncontiguous_format\n\x86.")  # (torch.float16, ...)
    assert safe_load_pickle(path) == (torch.float16, torch.contiguous_format)
    path.write_bytes(b"\x80\x02ctorch\nload\n.")
    with pytest.raises(UnsafePickleError, match=r"refused to load torch\.load"):
        safe_load_pickle(path)
    path.write_bytes(b"\x80\x02c__builtin__\neval\n.")  # protocol 2's Python 2 names are renamed, then refused
    with pytest.raises(UnsafePickleError, match=r"refused to load builtins\.eval"):
        safe_load_pickle(path)


def test_persistent_ids_are_refused(tmp_path):
    class WithIds(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage-0" if isinstance(obj, Gadget) else None

    buffer = io.BytesIO()
    WithIds(buffer, protocol=4).dump({"G_ema": Gadget()})
    path = tmp_path / "ids.pkl"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafePickleError, match="refused to load persistent id 'storage-0'"):
        load_network_pickle(path)


def test_a_hostile_storage_blob_is_refused_by_torchs_safe_loader(tmp_path, marker):
    blob = pickle.dumps(Call(os.system, (f"touch {marker}",)), protocol=2)
    path = dump(tmp_path / "blob.pkl", {"G_ema": Call(torch.storage._load_from_bytes, (blob,))})
    with pytest.raises(InputError, match=r"does not load with torch.load\(weights_only=True\)"):
        load_network_pickle(path)
    assert not marker.exists()


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but it is what tensors pickle through
        storage = torch.arange(6, dtype=torch.float32).storage()
    bad = Call(torch._utils._rebuild_tensor_v2, (storage, 2, (5,), (1,), False, OrderedDict()))
    path = dump(tmp_path / "oob.pkl", {"G_ema": bad})
    with pytest.raises(UnsafePickleError, match=r"reaching element 6 of a storage of 6"):
        load_network_pickle(path)


def test_numpy_object_arrays_are_refused(tmp_path):
    path = dump(tmp_path / "objects.pkl", {"G_ema": np.array([1, "a"], dtype=object)})
    with pytest.raises(UnsafePickleError, match="refused to load"):
        load_network_pickle(path)


# ---------------------------------------------------------------------------------------------------
# Files of the wrong kind, broken files, wrong keys: one line naming the problem and the fix.


def test_truncated_pickle(tmp_path):
    whole = dump(tmp_path / "whole.pkl", training_snapshot()).read_bytes()
    for cut in (len(whole) // 2, len(whole) - 1, 10):
        path = tmp_path / "cut.pkl"
        path.write_bytes(whole[:cut])
        with pytest.raises(InputError, match=r"not a complete pickle.*re-download or re-export") as info:
            load_network_pickle(path)
        assert "\n" not in str(info.value)


def test_torch_save_checkpoints_are_named_as_such(tmp_path):
    for legacy in (False, True):
        path = tmp_path / f"checkpoint{legacy}.pt"
        torch.save({"G_ema": torch.ones(2)}, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(InputError, match=r"is a torch\.save checkpoint, not an NVIDIA network pickle"):
            load_network_pickle(path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (json.dumps({"G_ema": [1, 2]}).encode(), r"is not a network pickle \(it starts with b'\{\"G_ema"),
        (b"", "is empty"),
        (pickle.dumps({"a": 1, "b": 2}), r"a pickled dict without networks \(keys: a, b\)"),
        (pickle.dumps([1, 2]), "holds a list, not a dict of networks"),
    ],
)
def test_files_of_the_wrong_kind(tmp_path, content, match):
    path = tmp_path / "file.pkl"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_network_pickle(path)


def test_missing_keys_missing_files_and_folders(tmp_path):
    path = dump(tmp_path / "snapshot.pkl", training_snapshot())
    with pytest.raises(InputError, match=r"has no network 'Gs': choose one of G, D, G_ema$"):
        load_network_pickle(path, "Gs")
    with pytest.raises(InputError, match=r"entry 'training_set_kwargs' .* is a dict, not a network: choose one of G,"):
        load_network_pickle(path, "training_set_kwargs")
    with pytest.raises(InputError, match=r"entry 'augment_pipe' .* is empty \(None\), not a network"):
        load_network_pickle(path, "augment_pipe")
    with pytest.raises(InputError, match="does not exist: check the path"):
        load_network_pickle(tmp_path / "nope.pkl")
    with pytest.raises(InputError, match="is a folder"):
        load_network_pickle(tmp_path)


# ---------------------------------------------------------------------------------------------------
# TensorFlow pickles: (G, D, Gs) converted to the stylegan2-ada-pytorch Generator's names.


def tf_variables(G):
    """The TensorFlow variables (mapping, synthesis, top level) whose conversion is G's state_dict."""
    sd = {k: v.numpy() for k, v in G.state_dict().items()}
    mapping = {}
    for i in range(2):
        mapping[f"Dense{i}/weight"] = sd[f"mapping.fc{i}.weight"].T
        mapping[f"Dense{i}/bias"] = sd[f"mapping.fc{i}.bias"]
    synthesis = {"4x4/Const/const": sd["synthesis.b4.const"][None]}
    for log2, res in enumerate((4, 8, 16), start=2):
        layers = [("conv1", "Conv", 0)] if res == 4 else [("conv0", "Conv0_up", 2 * log2 - 5)]
        layers += [] if res == 4 else [("conv1", "Conv1", 2 * log2 - 4)]
        for name, scope, noise in [*layers, ("torgb", "ToRGB", None)]:
            p, s = f"synthesis.b{res}.{name}.", f"{res}x{res}/{scope}/"
            weight = sd[p + "weight"].transpose(2, 3, 1, 0)  # [out, in, kh, kw] -> [kh, kw, in, out]
            synthesis[s + "weight"] = weight[::-1, ::-1] if name == "conv0" else weight
            synthesis[s + "bias"] = sd[p + "bias"]
            synthesis[s + "mod_weight"] = sd[p + "affine.weight"].T
            synthesis[s + "mod_bias"] = sd[p + "affine.bias"] - 1
            if noise is not None:
                synthesis[s + "noise_strength"] = sd[p + "noise_strength"]
                synthesis[f"noise{noise}"] = sd[p + "noise_const"][None, None]
    return {"dlatent_avg": sd["mapping.w_avg"], "lod": np.float32(0)}, mapping, synthesis


TF_KWARGS = dict(latent_size=8, dlatent_size=8, resolution=16, num_channels=3, mapping_layers=2, fmap_base=32)


def tf_pickle(path, G, src, replace=None, **static_kwargs):
    top, mapping, synthesis = tf_variables(G)
    synthesis |= replace or {}
    components = {"mapping": Network("G_mapping", {}, mapping, src=src), "synthesis": Network("G_synth", {}, synthesis)}
    gs = Network("G", TF_KWARGS | static_kwargs, top, components, src=src)
    d = Network("D", {}, {"Output/weight": np.zeros((1, 1), np.float32)}, src=src)
    return dump(path, (gs, d, gs), protocol=4)


def test_tensorflow_generator_converts_to_pytorch_names(tmp_path, marker):
    torch.manual_seed(1)
    G = Generator()
    path = tf_pickle(tmp_path / "tf.pkl", G, Persistent.module_src, truncation_psi=0.5)
    loaded = safe_load_pickle(path)
    assert all(isinstance(n, TFNetworkRecord) for n in loaded) and loaded[0].components["mapping"].name == "G_mapping"
    state = load_network_pickle(path, "G_ema")
    assert_same_state_dict(state.state_dict, G.state_dict())
    assert state.format == FORMAT_TENSORFLOW and state.class_name == "Generator" and state.keys == ("G", "D", "G_ema")
    assert state.init_kwargs["synthesis_kwargs"]["channel_base"] == 64  # TF's fmap_base counts half as much
    assert state.init_kwargs["mapping_kwargs"] == {
        "num_layers": 2,
        "embed_features": None,
        "layer_features": None,
        "activation": "lrelu",
        "lr_multiplier": 0.01,
        "w_avg_beta": 0.995,
    }
    assert not marker.exists() and "dnnlib" not in sys.modules


def test_tensorflow_conversion_transforms(tmp_path):
    torch.manual_seed(2)
    G = Generator()
    _, mapping, synthesis = tf_variables(G)
    sd = load_network_pickle(tf_pickle(tmp_path / "tf.pkl", G, "")).state_dict
    conv0 = synthesis["8x8/Conv0_up/weight"]  # [kh, kw, in, out], flipped
    assert sd["synthesis.b8.conv0.weight"][5, 2, 0, 1].item() == conv0[2, 1, 2, 5]
    assert sd["synthesis.b8.conv1.affine.bias"][0].item() == pytest.approx(synthesis["8x8/Conv1/mod_bias"][0] + 1)
    assert torch.equal(sd["synthesis.b8.conv0.noise_const"], torch.from_numpy(synthesis["noise1"][0, 0]))
    assert torch.equal(sd["mapping.fc1.weight"], torch.from_numpy(mapping["Dense1/weight"].T.copy()))
    assert torch.equal(sd["synthesis.b16.resample_filter"], setup_filter())
    assert sd["synthesis.b4.conv1.noise_strength"].shape == ()


def test_tensorflow_pickles_that_do_not_convert(tmp_path):
    G = Generator()
    path = tf_pickle(tmp_path / "tf.pkl", G, "")
    with pytest.raises(InputError, match="discriminator does not convert: load G or G_ema"):
        load_network_pickle(path, "D")
    with pytest.raises(InputError, match="kwarg 'fmap_decay', which has no stylegan2-ada-pytorch equivalent"):
        load_network_pickle(tf_pickle(tmp_path / "decay.pkl", G, "", fmap_decay=0.5))
    with pytest.raises(InputError, match="has no variable 'synthesis/32x32/Conv0_up/weight'"):
        load_network_pickle(tf_pickle(tmp_path / "res.pkl", G, "", resolution=32))
    flat_noise = {"noise0": np.zeros(16, np.float32)}
    with pytest.raises(InputError, match="do not have StyleGAN2's shapes"):
        load_network_pickle(tf_pickle(tmp_path / "noise.pkl", G, "", replace=flat_noise))


# ---------------------------------------------------------------------------------------------------
# End to end: load_generator("stylegan2:PATH") on a pickle of our own StyleGAN2's weights.


def mirror(module: torch.nn.Module, class_name: str, init_kwargs: dict | None = None) -> Persistent:
    """`module` re-dressed as NVIDIA pickles it: a persistent object per module, same parameters,
    buffers (persistent or not) and child names, so its flattened state is module.state_dict()."""
    record = type(class_name, (Persistent,), {})(**(init_kwargs or {}))
    for name, param in module._parameters.items():
        setattr(record, name, torch.nn.Parameter(param.detach().clone()))
    for name, buffer in module._buffers.items():
        record.register_buffer(name, buffer.clone(), persistent=name not in module._non_persistent_buffers_set)
    for name, child in module._modules.items():
        setattr(record, name, mirror(child, type(child).__name__))
    return record


def test_load_generator_builds_stylegan2_from_a_pickle_without_running_its_source(tmp_path, marker):
    from mlvgm.generators import load_generator
    from mlvgm.generators.stylegan2 import StyleGAN2
    from mlvgm.testing import check_mlvgm

    synthesis = EasyDict(channel_base=128, channel_max=16, num_fp16_res=0, conv_clamp=256)
    kwargs = dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                  mapping_kwargs=EasyDict(num_layers=2), synthesis_kwargs=synthesis)  # fmt: skip
    torch.manual_seed(0)
    ours = StyleGAN2(**kwargs, space="z")
    with torch.no_grad():
        ours.mapping.w_avg.normal_()  # a trained network's w_avg is not 0: truncation must use it
    data = {"G": mirror(ours, "Generator", kwargs), "D": Discriminator(), "G_ema": mirror(ours, "Generator", kwargs)}
    path = dump(tmp_path / "network-snapshot.pkl", data)

    g = load_generator(f"stylegan2:{path},space=z,truncation_psi=0.7")
    reference = StyleGAN2(**kwargs, space="z", truncation_psi=0.7)
    reference.load_state_dict(ours.state_dict())
    z = reference.sample_latents(3, generator=torch.Generator().manual_seed(2))
    assert g.level_dims == (16,) * len(g.groups) and not g.training
    assert torch.equal(g(z), reference.eval()(z))
    check_mlvgm(g, n=2)
    assert not marker.exists() and "torch_utils" not in sys.modules

    with pytest.raises(InputError, match=r"network of .* is a Discriminator, not a Generator: choose network=G_ema"):
        load_generator(f"stylegan2:{path},network=D")
    with pytest.raises(InputError, match="has no network 'Gs': choose one of G, D, G_ema"):
        load_generator(f"stylegan2:{path},network=Gs")
    with pytest.raises(InputError, match=r"needs a checkpoint path: write stylegan2:PATH\.pkl"):
        load_generator("stylegan2:")
