"""Reading NVIDIA's StyleGAN2 network pickles without running any code from them.

Threat model. A `.pkl` from NVIDIA (stylegan2-ada-pytorch, or the TensorFlow StyleGAN2 / StyleGAN2-ADA
releases) is a Python pickle, and `pickle.load` calls whatever function the file names: NVIDIA's own
loaders `exec` the source code that each network carries (`module_src` in stylegan2-ada-pytorch,
`build_module_src` in TensorFlow pickles), and a tampered file can name `os.system` outright. We treat
every file as hostile: nothing in it is imported, executed or looked up by name outside a fixed table.

What `SafeUnpickler.find_class` admits (everything else raises `UnsafePickleError` naming it):

    torch tensors       torch._utils._rebuild_tensor(_v2), _rebuild_parameter(_with_state),
                        torch._tensor._rebuild_from_type(_v2) (plain Tensor/Parameter only),
                        torch.storage._load_from_bytes: each storage is a small torch.save blob, read
                        with torch.load(weights_only=True); views are bounds-checked against it.
                        Our own functions stand in for torch's: they return plain tensors, never run
                        backward hooks, and check every argument.
    numpy               ndarray/_reconstruct/_frombuffer/dtype/scalar: stand-ins that record the
                        pickled shape, dtype and bytes and rebuild the array with np.frombuffer, so
                        numpy's C __setstate__ never sees file data; only numeric and bool dtypes.
    containers          collections.OrderedDict, builtins set/frozenset, _codecs.encode (how
                        protocol 2 writes bytes), torch.Size, torch.device and torch dtype / layout /
                        memory_format constants.
    NVIDIA's objects    torch_utils.persistence._reconstruct_persistent_obj -> `PersistentRecord`
                        (class name, version, sha256 of module_src, state; the source is kept as a
                        string and never executed); plain torch.nn.modules.* classes ->
                        `TorchModuleRecord`; dnnlib.util.EasyDict -> a dict; dnnlib.tflib.network
                        .Network -> `TFNetworkRecord` (its variables as numpy arrays).

Persistent ids (`persistent_load`) are refused: NVIDIA's pickles have none.

Formats. `load_network_pickle(path, key)` returns one network's `NetworkState`: its class name,
constructor kwargs and a flat state_dict named as `torch.nn.Module.state_dict()` names it
("mapping.fc0.weight", "synthesis.b4.conv1.affine.bias", buffers such as "mapping.w_avg").

    stylegan2-ada-pytorch   a dict {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}: any
                            network in it loads, with the module tree flattened as pickled.
    tensorflow              a tuple (G, D, Gs) of dnnlib.tflib.network.Network: G and Gs (key "G_ema")
                            are converted to the stylegan2-ada-pytorch Generator's names, shapes and
                            kwargs (StyleGAN2 configs E/F and StyleGAN2-ADA: architectures orig, skip,
                            resnet); the discriminator is not converted.
"""

from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import io
import math
import mmap
import os
import pickle
import pickletools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from mlvgm.errors import InputError
from mlvgm.generators.checks import check_zip_records
from mlvgm.io import check_regular_file

FORMAT_PYTORCH = "stylegan2-ada-pytorch"
FORMAT_TENSORFLOW = "tensorflow"

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save since torch 1.6
_LEGACY_TORCH_SAVE_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save, legacy (non-zip) format
_TF_KEYS = ("G", "D", "G_ema")  # what the three networks of a TensorFlow pickle are called here


class UnsafePickleError(InputError):
    """The pickle names a function or class outside the allowlist, or misuses an admitted one."""


def _refuse(what: str) -> UnsafePickleError:
    return UnsafePickleError(
        f"refused to load {what}: the file is not a plain network pickle and may be malicious; "
        "use the original file from NVIDIA"
    )


# ---------------------------------------------------------------------------------------------------
# Records: what NVIDIA's objects become instead of live code.


@dataclass(frozen=True, eq=False)
class PersistentRecord:
    """A `@persistence.persistent_class` object (e.g. a Generator), as data: its module_src is never run."""

    class_name: str  # the class's own name, e.g. "Generator"; its module is not stored in the pickle
    version: int  # torch_utils.persistence's format version (6 in stylegan2-ada-pytorch)
    module_src_sha256: str  # identifies the embedded source without executing it
    module_src: str  # the embedded source, as text: for reading, never for running
    state: dict[str, Any]  # the module's __dict__: _parameters, _buffers, _modules, _init_kwargs, ...


class TorchModuleRecord:
    """A plain torch.nn module (ModuleList, Sequential, Linear, ...) pickled inside a network, as data."""

    __slots__ = ("state",)
    class_path = "torch.nn.Module"  # overridden per admitted class, e.g. "torch.nn.modules.container.ModuleList"

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise _refuse(f"a {self.class_path} whose state is {type(state).__name__}, not a dict")
        self.state = state

    def __repr__(self) -> str:
        return f"TorchModuleRecord({self.class_path})"


class TFNetworkRecord:
    """A TensorFlow-era dnnlib.tflib.network.Network, as data: build_module_src is never run."""

    __slots__ = ("state",)

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise _refuse(f"a dnnlib.tflib.network.Network whose state is {type(state).__name__}, not a dict")
        self.state = state

    def _get(self, field: str, default: Any) -> Any:
        return getattr(self, "state", {}).get(field, default)

    @property
    def name(self) -> str:
        return str(self._get("name", ""))

    @property
    def version(self) -> int:
        return self._get("version", 0)

    @property
    def static_kwargs(self) -> dict[str, Any]:
        return _plain(self._get("static_kwargs", {}))

    @property
    def components(self) -> dict[str, TFNetworkRecord]:
        components = self._get("components", None)
        if components is None:
            return {}
        if not isinstance(components, dict):
            raise InputError(f"TensorFlow network {self.name!r} has malformed components: the pickle is corrupt")
        return dict(components)

    @property
    def build_func_name(self) -> str:
        return str(self._get("build_func_name", ""))

    @property
    def source_sha256(self) -> str:
        return hashlib.sha256(str(self._get("build_module_src", "")).encode()).hexdigest()

    @property
    def variables(self) -> dict[str, np.ndarray]:
        """This network's own variables, {"Dense0/weight": array}; components hold the rest."""
        pairs = self._get("variables", [])
        if not isinstance(pairs, list | tuple) or not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
            raise InputError(f"TensorFlow network {self.name!r} has malformed variables: the pickle is corrupt")
        return {str(name): value for name, value in pairs}

    def __repr__(self) -> str:
        return f"TFNetworkRecord({self.name!r})"


class _EasyDict(dict):
    """Stands in for dnnlib.util.EasyDict (a dict with attribute access): only the items matter."""

    def __setstate__(self, state: object) -> None:
        pass  # EasyDict keeps everything in its items; attribute state would be meaningless here


@dataclass(frozen=True, eq=False)
class NetworkState:
    """One network from a pickle, as plain data: enough to build our own module and load its weights."""

    class_name: str  # "Generator", "Discriminator", ... (the pickle does not record the module path)
    init_kwargs: dict[str, Any]  # constructor kwargs as plain Python values (nested dicts, lists, numbers)
    init_args: tuple[Any, ...]  # positional constructor args (empty for NVIDIA's networks)
    state_dict: dict[str, Tensor]  # flat names as nn.Module.state_dict() gives them, buffers included
    format: str  # FORMAT_PYTORCH or FORMAT_TENSORFLOW
    keys: tuple[str, ...]  # the networks and entries the pickle holds, e.g. ("G", "D", "G_ema", ...)
    source_sha256: str  # sha256 of the source code embedded with the network (never executed)


# ---------------------------------------------------------------------------------------------------
# Stand-ins for the admitted functions. Each checks its arguments: a pickle can call them with anything.


def _storage_parts(storage: object) -> tuple[torch.UntypedStorage, torch.dtype]:
    if isinstance(storage, torch.TypedStorage):
        return storage._untyped_storage, storage.dtype
    if isinstance(storage, torch.UntypedStorage):
        return storage, torch.uint8
    raise _refuse(f"a tensor built on a {type(storage).__name__} instead of a storage")


def _int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list | torch.Size) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise _refuse(f"a tensor whose {what} is {value!r}")
    return tuple(value)


def _rebuild_tensor(storage: object, storage_offset: object, size: object, stride: object) -> Tensor:
    """A view of `storage`, like torch._utils._rebuild_tensor, after checking it stays inside the storage."""
    untyped, dtype = _storage_parts(storage)
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
        raise _refuse(f"a tensor with storage offset {storage_offset!r}")
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise _refuse(f"a tensor with size {size} and stride {stride}")
    numel = untyped.nbytes() // dtype.itemsize
    if 0 not in size:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= numel:  # torch's set_ would silently grow the storage with uninitialised memory
            raise _refuse(f"a tensor of size {size} reaching element {last} of a storage of {numel}")
    return torch.empty((0,), dtype=dtype, device=untyped.device).set_(untyped, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,  # ignored: loaded weights are data, not leaves of a graph
    backward_hooks: object = None,  # ignored: hooks would be code to run
    metadata: object = None,  # conj/neg bits; NVIDIA's weights have none
) -> Tensor:
    if metadata:
        raise _refuse("a tensor with conjugate/negative-bit metadata")
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: object, requires_grad: object = False, backward_hooks: object = None) -> Tensor:
    if not isinstance(data, Tensor):
        raise _refuse(f"a Parameter built from {type(data).__name__}")
    return data  # a plain tensor: _parameters vs _buffers, not the type, tells parameters apart


def _rebuild_parameter_with_state(data: object, requires_grad: object, backward_hooks: object, state: object) -> Tensor:
    return _rebuild_parameter(data)  # state: Python attributes someone set on the Parameter; not weights


class _TensorType:
    """Marks torch.Tensor / torch.nn.Parameter where a pickle names the type: usable only as an argument."""

    __slots__ = ()


_TENSOR_TYPE = _TensorType()


def _rebuild_from_type(func: object, new_type: object, args: object, state: object = None) -> Tensor:
    """torch's path for tensors with Python attributes: allowed only for plain Tensor and Parameter."""
    if new_type is not _TENSOR_TYPE or func not in _TENSOR_FUNCTIONS or not isinstance(args, tuple):
        raise _refuse("a tensor subclass")
    return func(*args)


def _load_storage_bytes(data: object) -> torch.TypedStorage | torch.UntypedStorage:
    """torch.storage._load_from_bytes: the blob is a legacy torch.save file, read by torch's own safe loader."""
    if not isinstance(data, bytes | bytearray):
        raise _refuse(f"a storage built from {type(data).__name__}")
    # torch.load would inflate a compressed zip blob in full; torch's own blobs are legacy files or stored zips
    check_zip_records(bytes(data), where="a tensor storage in the pickle", fix="the file is corrupt; re-download it")
    try:
        storage = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 -- a damaged blob makes torch.load raise any of a dozen types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"a tensor storage in the pickle does not load with torch.load(weights_only=True) ({first}): "
            "the file is corrupt or not a plain network pickle; re-download it"
        ) from None
    if not isinstance(storage, torch.TypedStorage | torch.UntypedStorage):
        raise _refuse(f"a storage blob holding {type(storage).__name__}")
    return storage


_TENSOR_FUNCTIONS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_parameter, _rebuild_parameter_with_state)


def _persistent_record(meta: object) -> PersistentRecord:
    """Stands in for torch_utils.persistence._reconstruct_persistent_obj, which would exec meta['module_src']."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise _refuse("a persistent object whose metadata is not {'type': 'class', ...}")
    class_name, module_src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    version = meta.get("version")
    if not isinstance(class_name, str) or not isinstance(module_src, str) or not isinstance(version, int):
        raise _refuse("a persistent object without class_name, module_src and version")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise _refuse(f"a persistent {class_name} whose state is {type(state).__name__}, not a dict")
    digest = hashlib.sha256(module_src.encode()).hexdigest()
    return PersistentRecord(class_name, version, digest, module_src, state)


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    """_codecs.encode as protocol-2 pickles use it to write bytes: str -> latin-1 bytes, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _refuse(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin-1")


class _DtypeSpec:
    """A pickled numpy dtype: the constructor argument and the state BUILD gives it."""

    __slots__ = ("_dtype", "spec", "state")

    def __init__(self, spec: object) -> None:
        self.spec, self.state, self._dtype = spec, None, None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def dtype(self) -> np.dtype:
        """The real dtype: numeric or bool, no fields, no subarray, optional byte order."""
        if self._dtype is None:
            if not isinstance(self.spec, str):
                raise _refuse(f"a numpy dtype built from {type(self.spec).__name__}")
            try:
                dtype = np.dtype(self.spec)
            except TypeError:
                raise _refuse(f"numpy dtype {self.spec!r}") from None
            if dtype.kind not in "biufc":
                raise _refuse(f"numpy dtype {self.spec!r} (only numeric and bool arrays are read)")
            state = self.state
            if state is not None:
                if not isinstance(state, tuple) or len(state) < 5 or any(s is not None for s in state[2:5]):
                    raise _refuse("a structured numpy dtype")
                if state[1] in ("<", ">"):
                    dtype = dtype.newbyteorder(state[1])
            self._dtype = dtype
        return self._dtype


def _numpy_dtype(spec: object, align: object = False, copy: object = False) -> _DtypeSpec:
    return _DtypeSpec(spec)


class _ArraySpec:
    """A pickled numpy array: shape, dtype and raw bytes, turned into an array by `array()`."""

    __slots__ = ("_array", "state")

    def __init__(self) -> None:
        self.state, self._array = None, None

    def __setstate__(self, state: object) -> None:
        self.state = state

    def array(self) -> np.ndarray:
        if self._array is None:
            state = self.state
            if isinstance(state, tuple) and len(state) == 5:
                state = state[1:]  # (version, shape, dtype, is_fortran, rawdata)
            if not isinstance(state, tuple) or len(state) != 4:
                raise _refuse("a numpy array without its (shape, dtype, order, data) state")
            shape, dtype, fortran, raw = state
            self._array = _array_from_bytes(raw, dtype, shape, "F" if fortran else "C")
        return self._array


def _array_from_bytes(raw: object, dtype: object, shape: object, order: object) -> np.ndarray:
    if not isinstance(dtype, _DtypeSpec):
        raise _refuse(f"a numpy array of dtype {type(dtype).__name__}")
    dt = dtype.dtype()
    if not isinstance(raw, bytes | bytearray | pickle.PickleBuffer):
        raise _refuse(f"a numpy array whose data is {type(raw).__name__}, not bytes")
    shape = _int_tuple(shape, "shape")
    raw = bytes(raw)
    if any(n < 0 for n in shape) or math.prod(shape) * dt.itemsize != len(raw) or order not in ("C", "F"):
        raise InputError(f"a numpy array of shape {shape} has {len(raw)} bytes: the pickle is corrupt")
    return np.frombuffer(raw, dt).reshape(shape, order=order).copy()  # copy: writable, owns its memory


class _NdarrayType:
    """Marks numpy.ndarray where a pickle names the class: an argument of _reconstruct, never callable (calling
    the real class would allocate whatever shape the file asks for)."""

    __slots__ = ()

    def __call__(self, *args: object, **kwargs: object) -> None:
        raise _refuse("a call of numpy.ndarray (an array of whatever shape the file asks for)")


_NDARRAY_TYPE = _NdarrayType()


def _numpy_reconstruct(subtype: object, shape: object = (0,), dtype: object = b"b") -> _ArraySpec:
    if subtype is not _NDARRAY_TYPE:
        raise _refuse("a numpy array subclass")
    return _ArraySpec()


def _numpy_frombuffer(buf: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """numpy's protocol-5 path: (data, dtype, shape, order)."""
    return _array_from_bytes(buf, dtype, shape, order)


def _numpy_scalar(dtype: object, data: object = None) -> np.generic:
    if not isinstance(dtype, _DtypeSpec) or not isinstance(data, bytes):
        raise _refuse("a numpy scalar that is not a number")
    dt = dtype.dtype()
    if len(data) != dt.itemsize:
        raise InputError(f"a numpy {dt} scalar has {len(data)} bytes: the pickle is corrupt")
    return np.frombuffer(data, dt)[0]


_ALLOWED: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type"): _rebuild_from_type,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch.tensor", "_rebuild_from_type"): _rebuild_from_type,  # torch 1.7-1.9 named the module torch.tensor
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy", "ndarray"): _NDARRAY_TYPE,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
}

_TORCH_CONSTANTS = (torch.dtype, torch.layout, torch.memory_format)
_module_stand_ins: dict[tuple[str, str], type[TorchModuleRecord]] = {}


def _torch_module_stand_in(module: str, name: str) -> type[TorchModuleRecord] | None:
    """A TorchModuleRecord subclass for a torch.nn.modules class that torch has already imported, else None."""
    if not module.startswith("torch.nn.modules.") or not name.isidentifier():
        return None
    loaded = sys.modules.get(module)
    real = vars(loaded).get(name) if loaded is not None else None  # a look-up in an imported module only
    if not (isinstance(real, type) and issubclass(real, torch.nn.Module)):
        return None
    key = (module, name)
    if key not in _module_stand_ins:
        _module_stand_ins[key] = type(name, (TorchModuleRecord,), {"__slots__": (), "class_path": f"{module}.{name}"})
    return _module_stand_ins[key]


class SafeUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves names only from the allowlist above; `load()` returns plain data."""

    def find_class(self, module: str, name: str) -> object:
        # protocol 0-2 pickles may use Python 2 names (__builtin__.set): rename first, as pickle's own find_class does
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        constant = vars(torch).get(name) if module == "torch" else None  # not getattr: torch imports lazily
        if isinstance(constant, _TORCH_CONSTANTS):
            return constant  # torch.float32, torch.strided, torch.contiguous_format, ...
        stand_in = _torch_module_stand_in(module, name)
        if stand_in is not None:
            return stand_in
        raise _refuse(f"{module}.{name}")

    def persistent_load(self, pid: object) -> object:
        raise _refuse(f"persistent id {str(pid)[:80]!r}")

    def load(self) -> object:
        return _materialize(super().load(), {})


def _materialize(obj: object, done: dict[int, object]) -> object:
    """Replace numpy stand-ins by arrays and dtypes throughout the loaded tree, in place where mutable."""
    key = id(obj)
    if key in done:
        return done[key]
    if isinstance(obj, _ArraySpec):
        done[key] = obj.array()
    elif isinstance(obj, _DtypeSpec):
        done[key] = obj.dtype()
    elif isinstance(obj, dict):
        done[key] = obj
        for k, v in list(obj.items()):
            obj[k] = _materialize(v, done)
    elif isinstance(obj, list):
        done[key] = obj
        obj[:] = [_materialize(v, done) for v in obj]
    elif isinstance(obj, tuple) and not isinstance(obj, torch.Size):
        done[key] = obj  # a cycle back to this tuple keeps the original (only adversarial files have one)
        items = [_materialize(v, done) for v in obj]
        if any(a is not b for a, b in zip(items, obj, strict=True)):
            done[key] = tuple(items)
    elif isinstance(obj, PersistentRecord | TorchModuleRecord | TFNetworkRecord):
        done[key] = obj
        if isinstance(getattr(obj, "state", None), dict):
            _materialize(obj.state, done)
    else:
        done[key] = obj
    return done[key]


# ---------------------------------------------------------------------------------------------------
# Reading files.


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"network pickle {path} does not exist: check the path")
    if path.is_dir():
        raise InputError(f"network pickle {path} is a folder: give the .pkl file inside it")
    check_regular_file(path, what="network pickle", fix="give the .pkl file itself")  # a FIFO would block open()


def _check_header(path: Path, head: bytes) -> None:
    if head.startswith(_ZIP_MAGIC) or head.startswith(_LEGACY_TORCH_SAVE_MAGIC):
        raise InputError(
            f"{path} is a torch.save checkpoint, not an NVIDIA network pickle: give the network-snapshot-*.pkl "
            "written by NVIDIA's training code"
        )
    if not head:
        raise InputError(f"{path} is empty: re-download or re-export the network pickle")
    if head[0] != 0x80 or len(head) < 2 or head[1] < 2:
        raise InputError(
            f"{path} is not a network pickle (it starts with {head[:8]!r}, not a pickle protocol 2+ header): "
            "give an NVIDIA StyleGAN2 .pkl file"
        )


def safe_load_pickle(path: str | os.PathLike) -> object:
    """Unpickle `path` with SafeUnpickler: plain containers, tensors, numpy arrays and records, nothing else.

    The file is read through a read-only memory map, and its opcodes are checked before anything is built
    (`_check_opcodes`), so what the unpickler allocates is bounded by what the file holds.
    """
    path = Path(path)
    _check_file(path)
    try:
        f = open(path, "rb")  # opened outside `with` so that only open() errors read as permission problems
    except OSError as exc:
        raise InputError(f"cannot read network pickle {path} ({exc.strerror}): check its permissions") from None
    with f:
        _check_header(path, f.read(len(_LEGACY_TORCH_SAVE_MAGIC)))
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            _check_opcodes(path, data)
            data.seek(0)
            return _unpickle(path, data)


MAX_UNFOLDED = 1_000_000  # objects in the loaded tree with shared references unfolded; NVIDIA's pickles hold ~10**5
MAX_INT_BITS = 1024  # wider integers are no network's: their decimal text alone can take seconds
# Objects inside objects: NVIDIA's pickles nest about 40 deep (module trees of depth 5, a few objects per level);
# far below Python's recursion limit, so no walk, repr or comparison of what loads can overflow the stack.
MAX_DEPTH = 256


class _Node:
    """An object the pickle builds, as the opcode check sees it: its size with shared references unfolded
    (what a walk over it, a repr, or the hash of a tuple costs), how deeply objects nest inside it, and
    whether a container holds it yet."""

    __slots__ = ("depth", "held", "size")

    def __init__(self, size: int, depth: int = 1) -> None:
        self.size, self.depth, self.held = size, depth, False


_MARK = object()
_GROWS = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}  # change stack_before[0] in place
_PASSES = {"MEMOIZE", "READONLY_BUFFER", "DUP"}  # push back the object they take (DUP: twice)


def _check_opcodes(path: Path, data: mmap.mmap) -> None:
    """Refuse a pickle whose opcodes ask for more than the file holds, before the unpickler acts on them.

    - CPython's unpickler allocates a declared length before reading it (BINBYTES8 claiming 2**50 bytes is
      a MemoryError, 2**34 reserves 16 GiB): every length must fit in the bytes that follow it (pickletools
      reads them from the map, never past its end);
    - it grows its memo to the largest index a PUT names: a PUT must name a slot in use or the next one;
    - a few bytes of GETs build `x = (x, x)` nested 40 deep, whose hash (a dict key), repr or walk takes
      2**40 steps inside C code that no timeout interrupts: the stack is simulated with each object's
      unfolded size, which may not pass MAX_UNFOLDED, and a container may not change once another holds it
      (its holders' sizes would be stale; a pickler fills each container before using it);
    - objects nest at most MAX_DEPTH deep, so that no recursive walk, repr or comparison of the result (ours,
      torch's or Python's) runs out of stack: a RecursionError mid-load is a traceback, not a refusal.
    """

    def corrupt(why: str) -> InputError:
        return InputError(f"{path} {why}: the pickle is corrupt or not a plain network pickle; re-download it")

    def pop() -> _Node:
        if not stack or stack[-1] is _MARK:
            raise corrupt("takes an object from an empty stack")
        return stack.pop()

    stack: list = []
    memo: dict[int, _Node] = {}
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name, before = opcode.name, opcode.stack_before
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                slot = len(memo) if name == "MEMOIZE" else arg
                if not isinstance(slot, int) or not 0 <= slot <= len(memo):
                    raise corrupt(f"puts memo slot {slot} of {len(memo)}")
                if not stack or stack[-1] is _MARK:
                    raise corrupt("memoises an empty stack")
                memo[slot] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in memo:
                    raise corrupt(f"gets memo slot {arg}, which was never put")
                stack.append(memo[arg])
                continue
            if name == "FRAME" and arg > len(data) - data.tell():
                raise InputError(
                    f"{path} is not a complete pickle (a frame of {arg} bytes runs past its end): re-download or "
                    "re-export it"
                )
            if isinstance(arg, int) and abs(arg).bit_length() > MAX_INT_BITS:
                raise corrupt(f"holds an integer of {abs(arg).bit_length()} bits")
            if name == "MARK":
                stack.append(_MARK)
                continue
            taken: list[_Node] = []
            fixed = len(before)
            if pickletools.markobject in before:  # the items above the last MARK, then the mark
                fixed = before.index(pickletools.markobject)
                while stack and stack[-1] is not _MARK:
                    taken.append(stack.pop())
                if not stack:
                    raise corrupt("closes a MARK it never opened")
                stack.pop()
            if name == "POP" and stack and stack[-1] is _MARK:
                stack.pop()
                continue
            taken += [pop() for _ in range(fixed)]  # the deepest last: stack_before[0] for _GROWS
            if name in _GROWS:
                target, parts = taken[-1], taken[:-1]
                if target.held:
                    raise corrupt("changes a container after another object took it")
                target.size += sum(part.size for part in parts)
                target.depth = max([target.depth, *(1 + part.depth for part in parts)])
                for part in parts:
                    part.held = True
                new = [target]
            elif name in _PASSES:
                new = taken * (2 if name == "DUP" else 1)
            else:
                depth = 1 + max((part.depth for part in taken), default=0)
                new = [_Node(1 + sum(part.size for part in taken), depth)] * len(opcode.stack_after)
                for part in taken:
                    part.held = True
            if any(node.size > MAX_UNFOLDED for node in new):
                raise corrupt(f"builds an object of more than {MAX_UNFOLDED:,} objects once shared references unfold")
            if any(node.depth > MAX_DEPTH for node in new):
                raise corrupt(f"nests objects more than {MAX_DEPTH} deep")
            stack += new
            if name == "STOP":
                break
                raise InputError(
                    f"{path} is not a complete pickle (a frame of {arg} bytes runs past its end): re-download or "
                    "re-export it"
                )
    except ValueError as exc:  # pickletools: a length past the end, a bad opcode or argument, no STOP
        if isinstance(exc, InputError):
            raise
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "unreadable opcodes"
        truncated = any(word in detail for word in ("remain", "exhausted", "not enough data"))
        kind = "not a complete pickle" if truncated else "a corrupt pickle"
        raise InputError(f"{path} is {kind} ({detail}): re-download or re-export it") from None


def _unpickle(path: Path, f: BinaryIO | mmap.mmap) -> object:
    try:
        return SafeUnpickler(f).load()
    except InputError:
        raise
    except EOFError:
        raise InputError(f"{path} is not a complete pickle (it ends early): re-download or re-export it") from None
    except pickle.UnpicklingError as exc:
        if "truncated" in str(exc):
            raise InputError(f"{path} is not a complete pickle ({exc}): re-download or re-export it") from None
        raise InputError(f"{path} is a corrupt pickle ({exc}): re-download or re-export it") from None
    except RecursionError:
        raise InputError(f"{path} nests objects too deeply for a network pickle: it is corrupt") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, OverflowError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is a corrupt pickle ({detail}): re-download or re-export it") from None


# ---------------------------------------------------------------------------------------------------
# From records to a flat state_dict.


def _plain(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """EasyDicts, OrderedDicts and numpy scalars as plain dicts and Python numbers, recursively.

    Memoised by identity: a value shared n times is converted once (linear in the pickle, where an
    unmemoised walk of `x = [x, x]` nested k deep takes 2**k steps), and a cycle ends at its own copy.
    """
    memo = {} if memo is None else memo
    key = id(value)
    if key in memo:
        return memo[key]
    out: Any
    if isinstance(value, dict):
        out = memo[key] = {}
        out.update((k, _plain(v, memo)) for k, v in value.items())
    elif isinstance(value, list):
        out = memo[key] = []
        out.extend(_plain(v, memo) for v in value)
    elif isinstance(value, tuple) and type(value) is tuple:
        out = memo[key] = tuple(_plain(v, memo) for v in value)
    elif isinstance(value, np.generic):
        out = memo[key] = value.item()
    else:
        out = value
    return out


def module_state_dict(record: PersistentRecord | TorchModuleRecord) -> dict[str, Tensor]:
    """The flat state_dict of a pickled module tree: parameters, then persistent buffers, then children."""
    out: dict[str, Tensor] = {}
    _flatten(record, "", out, set())
    return out


def _field(state: dict, name: str, empty: object) -> object:
    """state[name], or `empty` when absent or None (not `or`: a file's tensor or array has no truth value)."""
    value = state.get(name)
    return empty if value is None else value


def _flatten(record: object, prefix: str, out: dict[str, Tensor], seen: set[int]) -> None:
    """Walk the module tree once per module: a module reached twice (a cycle, or a child shared by two
    parents, which NVIDIA's networks never have) is refused, so the walk is linear in the pickle."""
    where = prefix[:-1] or "the network"
    state = getattr(record, "state", None)
    if not isinstance(state, dict):
        raise InputError(f"{where} is a {type(record).__name__}, not a network module: the pickle is corrupt")
    if id(record) in seen:
        raise InputError(
            f"{where} is a module the network already holds (a shared or cyclic reference): the pickle is corrupt "
            "or not a plain network pickle"
        )
    seen.add(id(record))
    skip = _field(state, "_non_persistent_buffers_set", set())
    if not isinstance(skip, set | frozenset):
        raise InputError(f"{where}._non_persistent_buffers_set is not a set: the pickle is corrupt")
    for field in ("_parameters", "_buffers"):
        entries = _field(state, field, {})
        if not isinstance(entries, dict):
            raise InputError(f"{where}.{field} is a {type(entries).__name__}, not a dict: the pickle is corrupt")
        for name, tensor in entries.items():
            if tensor is None or (field == "_buffers" and name in skip):
                continue
            if not isinstance(name, str) or not isinstance(tensor, Tensor):
                raise InputError(f"{where}.{field}[{name!r}] is not a tensor: the pickle is corrupt")
            out[prefix + name] = tensor.detach()
    children = _field(state, "_modules", {})
    if not isinstance(children, dict):
        raise InputError(f"{where}._modules is a {type(children).__name__}, not a dict: the pickle is corrupt")
    for name, child in children.items():
        if child is not None:
            _flatten(child, f"{prefix}{name}.", out, seen)


# ---------------------------------------------------------------------------------------------------
# TensorFlow generators -> the stylegan2-ada-pytorch Generator's names.

# TensorFlow static kwarg -> (where it goes in the pytorch kwargs, default when absent, value when None).
_TF_GENERATOR_KWARGS: dict[str, tuple[tuple[str, ...], Any, Any]] = {
    "latent_size": (("z_dim",), 512, None),
    "label_size": (("c_dim",), 0, None),
    "dlatent_size": (("w_dim",), 512, None),
    "resolution": (("img_resolution",), 1024, None),
    "num_channels": (("img_channels",), 3, None),
    "mapping_layers": (("mapping_kwargs", "num_layers"), 8, None),
    "label_fmaps": (("mapping_kwargs", "embed_features"), None, None),
    "mapping_fmaps": (("mapping_kwargs", "layer_features"), None, None),
    "mapping_nonlinearity": (("mapping_kwargs", "activation"), "lrelu", None),
    "mapping_lrmul": (("mapping_kwargs", "lr_multiplier"), 0.01, None),
    "w_avg_beta": (("mapping_kwargs", "w_avg_beta"), 0.995, 1),
    "fmap_base": (("synthesis_kwargs", "channel_base"), 16384, None),  # doubled below: pytorch divides by res
    "fmap_max": (("synthesis_kwargs", "channel_max"), 512, None),
    "num_fp16_res": (("synthesis_kwargs", "num_fp16_res"), 0, None),
    "conv_clamp": (("synthesis_kwargs", "conv_clamp"), None, None),
    "architecture": (("synthesis_kwargs", "architecture"), "skip", None),
    "resample_kernel": (("synthesis_kwargs", "resample_filter"), [1, 3, 3, 1], None),
    "use_noise": (("synthesis_kwargs", "use_noise"), True, None),
    "nonlinearity": (("synthesis_kwargs", "activation"), "lrelu", None),
}
_TF_RUNTIME_KWARGS = {"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"}  # no weights


def _tf_generator_kwargs(net: TFNetworkRecord) -> dict[str, Any]:
    tf_kwargs = net.static_kwargs
    if not isinstance(tf_kwargs, dict):
        raise InputError(f"TensorFlow generator {net.name!r} has static_kwargs of type {type(tf_kwargs).__name__}: "
                         "the pickle is corrupt")  # fmt: skip
    unknown = sorted(set(tf_kwargs) - set(_TF_GENERATOR_KWARGS) - _TF_RUNTIME_KWARGS, key=str)
    if unknown:
        raise InputError(
            f"TensorFlow generator {net.name!r} has kwarg {unknown[0]!r}, which has no stylegan2-ada-pytorch "
            "equivalent: only StyleGAN2 (configs E, F) and StyleGAN2-ADA generators convert"
        )
    kwargs: dict[str, Any] = {"mapping_kwargs": {}, "synthesis_kwargs": {}}
    for tf_name, (where, default, if_none) in _TF_GENERATOR_KWARGS.items():
        value = tf_kwargs.get(tf_name, default)
        value = if_none if value is None else value
        target = kwargs if len(where) == 1 else kwargs[where[0]]
        target[where[-1]] = value
    for where, value in [
        *((k, kwargs[k]) for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")),
        ("mapping_kwargs.num_layers", kwargs["mapping_kwargs"]["num_layers"]),
        ("synthesis_kwargs.channel_base", kwargs["synthesis_kwargs"]["channel_base"]),
    ]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"TensorFlow generator {net.name!r} gives {where} = {value!r}: the pickle is corrupt")
    kwargs["synthesis_kwargs"]["channel_base"] *= 2
    return {k: kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")} | {
        "mapping_kwargs": kwargs["mapping_kwargs"],
        "synthesis_kwargs": kwargs["synthesis_kwargs"],
    }


def _tf_variables(
    net: TFNetworkRecord, prefix: str = "", depth: int = 0, seen: set[int] | None = None
) -> dict[str, np.ndarray]:
    """All variables of a network and its components: {"mapping/Dense0/weight": array, "dlatent_avg": ...}.
    Each component is visited once (a shared one is refused), so the walk is linear in the pickle."""
    seen = set() if seen is None else seen
    if depth > 8:
        raise InputError("TensorFlow network components nest too deeply: the pickle is corrupt")
    if id(net) in seen:
        raise InputError(f"TensorFlow component {prefix[:-1] or net.name!r} appears twice: the pickle is corrupt")
    seen.add(id(net))
    found = {prefix + name: value for name, value in net.variables.items()}
    for name, component in net.components.items():
        if not isinstance(component, TFNetworkRecord):
            raise InputError(f"TensorFlow component {prefix}{name} is not a network: the pickle is corrupt")
        found |= _tf_variables(component, f"{prefix}{name}/", depth + 1, seen)
    return found


def _setup_filter(kernel: Any) -> Tensor:
    """The FIR filter buffer a pytorch layer registers for `resample_filter`: outer product, summing to 1."""
    f = torch.as_tensor(1 if kernel is None else kernel, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:  # short 1-D kernels become 2-D; long ones stay separable
        f = torch.outer(f, f)
    return f / f.sum()


def _tf_generator_state(net: TFNetworkRecord) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(init_kwargs, state_dict) of the stylegan2-ada-pytorch Generator equivalent to TensorFlow generator `net`."""
    if not isinstance(net.version, int) or net.version < 4:
        raise InputError(
            f"TensorFlow network pickle version {net.version!r} is too old: only StyleGAN2 and StyleGAN2-ADA "
            "pickles (version 4) convert"
        )
    kwargs = _tf_generator_kwargs(net)
    tf = _tf_variables(net)

    def var(name: str) -> np.ndarray:
        value = tf.get(name)
        if value is None:
            raise InputError(
                f"TensorFlow generator {net.name!r} has no variable {name!r}: only StyleGAN2 (configs E, F) "
                "and StyleGAN2-ADA generators convert"
            )
        if not isinstance(value, np.ndarray):
            raise InputError(f"TensorFlow variable {name!r} is a {type(value).__name__}: the pickle is corrupt")
        return value

    def t(array: np.ndarray | np.generic) -> Tensor:
        return torch.from_numpy(np.array(array, order="C"))  # a copy; 0-d stays 0-d (ascontiguousarray: 1-d)

    def conv(weight: np.ndarray, flip: bool = False) -> Tensor:
        # TF stores [kh, kw, in, out]; transposed convolutions ran with a flipped kernel
        if flip:
            weight = weight[::-1, ::-1]
        return t(weight.transpose(3, 2, 0, 1))

    resolution = kwargs["img_resolution"]
    synthesis, mapping = kwargs["synthesis_kwargs"], kwargs["mapping_kwargs"]
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise InputError(f"TensorFlow generator resolution {resolution!r} is not a power of two >= 4")
    architecture = synthesis["architecture"]
    if architecture not in ("orig", "skip", "resnet"):
        raise InputError(f"TensorFlow generator architecture {architecture!r} does not convert")
    use_noise = bool(synthesis["use_noise"])
    resample_filter = _setup_filter(synthesis["resample_filter"])

    sd: dict[str, Tensor] = {}

    def layer(p: str, tf_scope: str, noise_index: int, flip: bool) -> None:
        # SynthesisLayer's order: weight, noise_strength, bias, resample_filter, noise_const, affine.*
        sd[p + "weight"] = conv(var(tf_scope + "weight"), flip)
        if use_noise:
            sd[p + "noise_strength"] = t(var(tf_scope + "noise_strength"))
        sd[p + "bias"] = t(var(tf_scope + "bias"))
        sd[p + "resample_filter"] = resample_filter.clone()
        if use_noise:
            sd[p + "noise_const"] = t(var(f"synthesis/noise{noise_index}")[0, 0])
        sd[p + "affine.weight"] = t(var(tf_scope + "mod_weight").T)
        sd[p + "affine.bias"] = t(var(tf_scope + "mod_bias") + 1)  # TF adds the 1 at run time

    for log2 in range(2, int(math.log2(resolution)) + 1):
        res = 2**log2
        p, scope = f"synthesis.b{res}.", f"synthesis/{res}x{res}/"
        if res == 4:
            sd[p + "const"] = t(var(scope + "Const/const")[0])
        sd[p + "resample_filter"] = resample_filter.clone()
        if res > 4:
            layer(p + "conv0.", scope + "Conv0_up/", 2 * log2 - 5, flip=True)
        layer(p + "conv1.", scope + ("Conv/" if res == 4 else "Conv1/"), 0 if res == 4 else 2 * log2 - 4, flip=False)
        if architecture == "skip" or res == resolution:
            sd[p + "torgb.weight"] = conv(var(scope + "ToRGB/weight"))
            sd[p + "torgb.bias"] = t(var(scope + "ToRGB/bias"))
            sd[p + "torgb.affine.weight"] = t(var(scope + "ToRGB/mod_weight").T)
            sd[p + "torgb.affine.bias"] = t(var(scope + "ToRGB/mod_bias") + 1)
        if architecture == "resnet" and res > 4:
            sd[p + "skip.weight"] = conv(var(scope + "Skip/weight"), flip=True)
            sd[p + "skip.resample_filter"] = resample_filter.clone()

    sd["mapping.w_avg"] = t(var("dlatent_avg"))
    if kwargs["c_dim"]:
        sd["mapping.embed.weight"] = t(var("mapping/LabelEmbed/weight").T)
        sd["mapping.embed.bias"] = t(var("mapping/LabelEmbed/bias"))
    for i in range(mapping["num_layers"]):
        sd[f"mapping.fc{i}.weight"] = t(var(f"mapping/Dense{i}/weight").T)
        sd[f"mapping.fc{i}.bias"] = t(var(f"mapping/Dense{i}/bias"))
    return kwargs, sd


# ---------------------------------------------------------------------------------------------------
# The entry point.


def load_network_pickle(path: str | os.PathLike, key: str = "G_ema") -> NetworkState:
    """Network `key` of NVIDIA pickle `path` ("G", "D", "G_ema", ...), read without running code from the file."""
    path = Path(path)
    data = safe_load_pickle(path)
    if isinstance(data, tuple) and len(data) == 3 and all(isinstance(n, TFNetworkRecord) for n in data):
        return _tf_network_state(path, dict(zip(_TF_KEYS, data, strict=True)), key)
    if not isinstance(data, dict):
        raise InputError(
            f"{path} holds a {type(data).__name__}, not a dict of networks: it is not an NVIDIA StyleGAN2 "
            "network pickle"
        )
    keys = tuple(str(k) for k in data)
    networks = [k for k, v in data.items() if isinstance(v, PersistentRecord) and str(k).isidentifier()]
    if not networks:
        raise InputError(
            f"{path} is a pickled dict without networks (keys: {', '.join(keys) or 'none'}): it is not an NVIDIA "
            "StyleGAN2 network pickle"
        )
    if key not in data:
        raise InputError(f"{path} has no network {key!r}: choose one of {', '.join(networks)}")
    record = data[key]
    if not isinstance(record, PersistentRecord):
        kind = "dict" if isinstance(record, dict) else type(record).__name__
        kind = "empty (None)" if record is None else f"a {kind}"
        raise InputError(f"entry {key!r} of {path} is {kind}, not a network: choose one of {', '.join(networks)}")
    init_kwargs = record.state.get("_init_kwargs", {})
    init_args = record.state.get("_init_args", ())
    if not isinstance(init_kwargs, dict) or not isinstance(init_args, tuple | list):
        raise InputError(f"network {key!r} of {path} has malformed constructor arguments: the pickle is corrupt")
    return NetworkState(
        class_name=record.class_name,
        init_kwargs=_plain(init_kwargs),
        init_args=tuple(_plain(list(init_args))),
        state_dict=module_state_dict(record),
        format=FORMAT_PYTORCH,
        keys=keys,
        source_sha256=record.module_src_sha256,
    )


def _tf_network_state(path: Path, networks: dict[str, TFNetworkRecord], key: str) -> NetworkState:
    if key not in networks:
        raise InputError(f"{path} (a TensorFlow pickle) has no network {key!r}: choose one of G, G_ema")
    if key == "D":
        raise InputError(
            f"{path} is a TensorFlow pickle, whose discriminator does not convert: load G or G_ema, or convert "
            "the file with stylegan2-ada-pytorch's legacy.py"
        )
    net = networks[key]
    try:
        init_kwargs, state_dict = _tf_generator_state(net)
    except (IndexError, ValueError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(
            f"the variables of TensorFlow generator {key!r} in {path} do not have StyleGAN2's shapes ({exc}): "
            "the pickle is corrupt or not a StyleGAN2 generator"
        ) from None
    return NetworkState(
        class_name="Generator",
        init_kwargs=init_kwargs,
        init_args=(),
        state_dict=state_dict,
        format=FORMAT_TENSORFLOW,
        keys=_TF_KEYS,
        source_sha256=net.source_sha256,
    )


__all__ = [
    "FORMAT_PYTORCH",
    "FORMAT_TENSORFLOW",
    "NetworkState",
    "PersistentRecord",
    "SafeUnpickler",
    "TFNetworkRecord",
    "TorchModuleRecord",
    "UnsafePickleError",
    "load_network_pickle",
    "module_state_dict",
    "safe_load_pickle",
]
