"""Pickle opcodes for the loader fuzzer (fuzz_loaders.py), written by hand: the builders (op_int, op_str,
..., laughs), the parser of a file's opcodes (Op, parse_ops), and the values the mutations and the generated
pickles draw from (boundary numbers, the names the loaders admit or refuse, the formats' strings).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import random
import struct
from dataclasses import dataclass

BOUNDARY_INTS = (
    0,
    -1,
    1,
    2**31 - 1,
    2**31,
    -(2**31),
    2**32 - 1,
    2**32,
    2**33,
    10**9,
    2**50,
    2**63 - 1,
    -(2**63),
    2**64,
)
SMALL_INTS = (0, 1, 2, 3, 4, 5, 7, 8, 16, 32, 64, 128, 255, 256, 512, 1024, -1, -2)
HUGE_INTS = (2**20, 2**24, 2**31, 2**32 - 1, 2**33, 10**9, 2**40, 2**50, 2**62, 2**63 - 1)
FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e308, -1e308, 5e-324, float("inf"), float("-inf"), float("nan"), 0.01)

# Names the loaders admit (the formats' own names), and some they must refuse. The refused ones would
# be harmless even if a bug admitted them: a fuzzer must not name os.system.
ADMITTED_GLOBALS = (
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "set"),
    ("_codecs", "encode"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.storage", "_load_from_bytes"),
    ("torch", "Tensor"),
    ("torch.nn.parameter", "Parameter"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "float32"),
    ("torch", "bfloat16"),
    ("torch", "strided"),
    ("torch", "contiguous_format"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("dnnlib.util", "EasyDict"),
    ("dnnlib", "EasyDict"),
    ("dnnlib.tflib.network", "Network"),
    ("torch.nn.modules.linear", "Linear"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.conv", "Conv2d"),
)
REFUSED_GLOBALS = (
    ("builtins", "len"),
    ("builtins", "list"),
    ("torch", "zeros"),
    ("numpy", "frombuffer"),
    ("posixpath", "join"),
    ("torch.nn.modules.linear", "NoSuchModule"),
    ("mlvgm.errors", "InputError"),
)
STRINGS = (
    "G_ema", "G", "D", "Gs", "augment_pipe", "training_set_kwargs", "type", "class", "version", "module_src",
    "class_name", "state", "Generator", "Discriminator", "MappingNetwork", "_parameters", "_buffers", "_modules",
    "_init_kwargs", "_init_args", "_non_persistent_buffers_set", "training", "weight", "bias", "w_avg", "const",
    "mapping", "synthesis", "fc0", "b4", "conv1", "torgb", "affine", "noise_const", "resample_filter",
    "z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs",
    "num_layers", "layer_features", "embed_features", "channel_base", "channel_max", "num_fp16_res",
    "conv_clamp", "architecture", "skip", "resnet", "orig", "lrelu", "linear", "f4", "<f4", ">f8", "f8", "i8",
    "b1", "c16", "O", "U3", "V8", "S4", "M8", "latin1", "utf-8", "cpu", "cuda", "meta", "name", "variables",
    "static_kwargs", "components", "build_module_src", "build_func_name", "latent_size", "resolution",
    "dlatent_size", "fmap_base", "mapping_layers", "dlatent_avg", "storage", "", "\n", "x" * 300,
)  # fmt: skip


# ---------------------------------------------------------------------------------------------------
# Pickle opcodes, written by hand: the generated cases call admitted names with arguments no real
# object would pickle to.


def op_int(v: int) -> bytes:
    """The shortest integer push for v (BININT1/BININT2/BININT/LONG1/LONG4)."""
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + v.to_bytes(2, "little")
    if -(2**31) <= v < 2**31:
        return b"J" + v.to_bytes(4, "little", signed=True)
    data = pickle.encode_long(v)
    return (b"\x8a" + bytes([len(data)]) if len(data) < 256 else b"\x8b" + struct.pack("<i", len(data))) + data


def op_str(s: str) -> bytes:
    b = s.encode("utf-8", "surrogatepass")
    return (b"\x8c" + bytes([len(b)]) if len(b) < 256 else b"X" + struct.pack("<I", len(b))) + b


def op_bytes(b: bytes) -> bytes:
    return (b"C" + bytes([len(b)]) if len(b) < 256 else b"B" + struct.pack("<I", len(b))) + b


def op_float(f: float) -> bytes:
    return b"G" + struct.pack(">d", f)


def op_global(module: str, name: str, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return op_str(module) + op_str(name) + b"\x93"  # STACK_GLOBAL


MARK, STOP, TUPLE, EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3 = b"(", b".", b"t", b")", b"\x85", b"\x86", b"\x87"
EMPTY_DICT, SETITEMS, EMPTY_LIST, APPENDS, EMPTY_SET, ADDITEMS = b"}", b"u", b"]", b"e", b"\x8f", b"\x90"
REDUCE, BUILD, NEWOBJ, NONE, TRUE, FALSE, FROZENSET = b"R", b"b", b"\x81", b"N", b"\x88", b"\x89", b"\x91"
POP = b"0"


def op_put(i: int) -> bytes:
    i %= 2**32  # LONG_BINPUT's field: a slot moved past it wraps around
    return b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)


def op_get(i: int) -> bytes:
    i %= 2**32
    return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)


def laughs(depth: int, base: int, container: bytes) -> bytes:
    """A value whose tree is 2**depth leaves but whose pickle is O(depth): each level holds the previous twice.

    It takes memo slots base .. base + depth. container: TUPLE2 (tuples), or b"l" (MARK ... LIST: lists).
    """
    out = EMPTY_LIST + op_put(base)
    for k in range(depth):
        pair = op_get(base + k) + op_get(base + k)
        out += POP + (pair + TUPLE2 if container == TUPLE2 else MARK + pair + b"l") + op_put(base + k + 1)
    return out


# ---------------------------------------------------------------------------------------------------
# Parsing: every opcode of every pickle in a file (torch's legacy format is several pickles in a row).


@dataclass(frozen=True)
class Op:
    name: str
    arg: object
    pos: int  # offset of the opcode byte
    end: int  # offset after its argument


def parse_ops(data: bytes) -> list[Op]:
    """The opcodes pickletools can read, pickle after pickle, up to the first one it cannot."""
    ops: list[Op] = []
    f = io.BytesIO(data)
    while f.tell() < len(data) and data[f.tell()] == 0x80:
        start = f.tell()
        try:
            for opcode, arg, pos in pickletools.genops(f):
                ops.append(Op(opcode.name, arg, pos, f.tell()))
        except Exception:  # noqa: BLE001 -- a fuzzed stream breaks genops with any of several types
            break
        if f.tell() == start:
            break
    return ops
