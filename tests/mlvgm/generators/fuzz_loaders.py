"""A seeded fuzzer for the checkpoint loaders: mutated and generated files, run in child processes.

Targets (each case is one file and one of them):

    safe_load_pickle   mlvgm.generators.safe_pickle.safe_load_pickle(PATH)
    stylegan2          load_generator("stylegan2:PATH")
    bigbigan           load_generator("bigbigan:PATH,<BIGBIGAN_OPTIONS>")

The only acceptable outcomes are "ok" (the loader returned) and "input_error" (it raised
mlvgm.errors.InputError with a non-empty one-line message). Everything else is a failure:

    exception      any other exception type (RecursionError included)
    memory_error   MemoryError: the file asked for more memory than the child may map
    timeout        the case ran past its per-case timeout (SIGALRM, checked between bytecodes)
    bad_message    an InputError whose message is empty or spans lines
    crash          the child died (a signal, or a non-zero exit) during the case
    hang           the child stopped answering (a long C loop ignores SIGALRM): the parent killed it
    fuzzer_error   the fuzzer itself failed to build the case (a bug here, not in the loader)

Inputs. Seeds are small valid files built from the fixtures of test_safe_pickle.py and test_bigbigan.py
(no download): a stylegan2-ada-pytorch snapshot of a tiny StyleGAN2 (8 px, z/w 8, 2 mapping layers) in
pickle protocols 2 and 4, a TensorFlow (G, D, Gs) pickle of a 16 px one, and BigBiGAN state dicts in
torch.save's zip and legacy formats. Torch's legacy serialisation names storages by memory address; the
seeds rename them, so the corpus is the same bytes in every process. Two kinds are generated per case:
"grammar" (stack-consistent pickles built from the loaders' own vocabulary: persistent networks, tensors,
numpy arrays, TensorFlow networks, shared sub-objects) and "opstream" (random opcodes with well-formed
random arguments). Mutations: byte flips, overwrites, insertions, deletions, truncation, duplicated
ranges, splices of two seeds, and structure-aware ones located with pickletools.genops: integer and
length arguments set to boundary values, shape-like runs of integers made huge, strings and names
swapped, opcodes deleted/duplicated/swapped, a value replaced by a deeply shared structure, FRAMEs
removed, nested torch.save blobs and the pickle inside a zip checkpoint mutated in place.

Isolation. A child process imports torch once and runs a range of cases. After a warm-up load of every
seed it caps its address space at its current VmSize plus a margin (torch maps a lot of virtual memory
at import) and arms a SIGALRM timer per case. Before each case it writes the case index to a status file,
so the parent knows which case a dead child was running; it then restarts a child after that case.

Reproducing. Case i of master seed S is the same bytes and target everywhere:

    python tests/mlvgm/generators/fuzz_loaders.py case --master-seed S --index i --out case.bin --run
    python tests/mlvgm/generators/fuzz_loaders.py run --cases 20000 --workers 2 --out DIR   # a campaign
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("safe_load_pickle", "stylegan2", "bigbigan")
ALLOWED_OUTCOMES = ("ok", "input_error")
FAILURE_OUTCOMES = ("exception", "memory_error", "timeout", "bad_message", "crash", "hang", "fuzzer_error")

# The narrow networks the seeds hold.
STYLEGAN2_KWARGS = dict(
    z_dim=8,
    c_dim=0,
    w_dim=8,
    img_resolution=8,
    img_channels=3,
    mapping_kwargs=dict(num_layers=2),
    synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=256),
)
TF_STYLEGAN2_KWARGS = dict(  # tf_variables() in test_safe_pickle.py converts a 16 px, 2-layer generator
    z_dim=8,
    c_dim=0,
    w_dim=8,
    img_resolution=16,
    img_channels=3,
    mapping_kwargs=dict(num_layers=2),
    synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0, conv_clamp=None),
)
BIGBIGAN_OPTIONS = dict(ch=2, resolution=32, attention=16, dim_z=8, shared_dim=4, n_classes=2)
BIGBIGAN_SPEC_OPTIONS = ",".join(f"{k}={v}" for k, v in BIGBIGAN_OPTIONS.items())

# Seed files of the corpus, and which loader reads each one.
SEED_FILES = {
    "sg2-p2": "stylegan2-protocol2.pkl",
    "sg2-p4": "stylegan2-protocol4.pkl",
    "tf": "tensorflow.pkl",
    "bigbigan-zip": "bigbigan.pth",
    "bigbigan-legacy": "bigbigan-legacy.pth",
}
# How often each kind of case is drawn (seed names, then the two generated kinds).
KIND_WEIGHTS = {
    "sg2-p2": 14,
    "sg2-p4": 14,
    "tf": 14,
    "bigbigan-zip": 14,
    "bigbigan-legacy": 7,
    "grammar": 27,
    "opstream": 10,
}
# Target weights per kind: each file mostly goes to its own loader, sometimes to the other one.
TARGET_WEIGHTS = {
    "sg2-p2": (45, 45, 10),
    "sg2-p4": (45, 45, 10),
    "tf": (45, 45, 10),
    "bigbigan-zip": (8, 7, 85),
    "bigbigan-legacy": (8, 7, 85),
    "grammar": (40, 50, 10),
    "opstream": (50, 40, 10),
}

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
# Generator kwargs by name: the seeds' value first, then values a fuzzed checkpoint might give them.
KWARG_VALUES = {
    "z_dim": (8, 0, 1, -1, 3, 512, 10**9, 2**31, 2**63 - 1, True, 8.0, "8", None),
    "c_dim": (0, 1, -1, 10, None),
    "w_dim": (8, 0, 1, -1, 512, 10**9, 2**40),
    "img_resolution": (8, 4, 16, 64, 1024, 3, 0, -4, 2**30, 2**62, 8.0),
    "img_channels": (3, 1, 0, 4, -3),
    "num_layers": (2, 0, 1, 8, -1, 10**6, 10**9),
    "layer_features": (None, 0, 8, -1, 10**9, [0], [8]),
    "embed_features": (None, 0, 8, -1, 10**9),
    "activation": ("lrelu", "linear", "relu", "tanh", "sigmoid", "swish", "nonsense", 0),
    "lr_multiplier": (0.01, 0.0, -1.0, float("nan"), float("inf"), 1e308),
    "w_avg_beta": (0.995, None, 1, 0, float("nan")),
    "channel_base": (64, 32, 1, 0, -64, 16384, 32768, 2**20, 10**9, 2**40),
    "channel_max": (8, 1, 0, -1, 512, 10**6, 10**9),
    "num_fp16_res": (0, 4, 100, -1),
    "conv_clamp": (256, None, 0, -1, 0.5, float("nan"), 1e308),
    "architecture": ("skip", "orig", "resnet", "other", 3),
    "resample_filter": ([1, 3, 3, 1], [1], [], [0, 0], [[1, 2], [3, 4]], [1] * 1000, None),
    "use_noise": (True, False, 0, "yes"),
}


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


INT_OPS = {"BININT", "BININT1", "BININT2", "LONG1", "LONG4", "INT", "LONG"}
# Opcodes whose argument starts with a length: (width of the length field, signed).
LENGTH_OPS = {
    "SHORT_BINBYTES": (1, False),
    "BINBYTES": (4, False),
    "BINBYTES8": (8, False),
    "SHORT_BINUNICODE": (1, False),
    "BINUNICODE": (4, False),
    "BINUNICODE8": (8, False),
    "BYTEARRAY8": (8, False),
    "FRAME": (8, False),
    "SHORT_BINSTRING": (1, False),
    "BINSTRING": (4, True),
    "LONG1": (1, False),
    "LONG4": (4, True),
}
MEMO_OPS = {"BINGET": 1, "LONG_BINGET": 4, "BINPUT": 1, "LONG_BINPUT": 4}
STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"}
# A single-value push with no stack input: safe to replace by another single value.
VALUE_OPS = INT_OPS | STRING_OPS | {"NONE", "NEWTRUE", "NEWFALSE", "BINFLOAT", "FLOAT", "SHORT_BINBYTES", "BINBYTES"}
ITEMSIZES = {"f4": 4, "f8": 8, "<f4": 4, ">f4": 4, "i8": 8, "b1": 1, "c8": 8, "f2": 2, "u1": 1}  # numpy dtypes
BLOB_SIZES = (1, 2, 4, 8, 16)  # elements of the storage blobs the grammar builds tensors on
LEGACY_BLOB = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # torch's legacy magic number, pickled


# ---------------------------------------------------------------------------------------------------
# Mutations. Each takes (data, rng, ctx) and returns the new bytes, or None where it does not apply.


@dataclass
class Context:
    corpus: list[bytes]  # every seed, for splicing
    depth: int = 0  # nesting of blob / zip mutations


def _span(data: bytes, rng: random.Random, most: int) -> tuple[int, int]:
    a = rng.randrange(len(data) + 1)
    return a, min(len(data), a + rng.randint(1, most))


def m_flip(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    if not data:
        return None
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def m_overwrite(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    if not data:
        return None
    out = bytearray(data)
    a = rng.randrange(len(out))
    n = rng.randint(1, 8)
    fill = bytes(rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256))) for _ in range(n))
    out[a : a + n] = fill[: len(out) - a]
    return bytes(out)


def m_insert(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    a = rng.randrange(len(data) + 1)
    if rng.random() < 0.5 or not data:
        chunk = rng.randbytes(rng.randint(1, 64))
    else:
        chunk = bytes(pickletools.opcodes[rng.randrange(len(pickletools.opcodes))].code, "latin-1")
        chunk += rng.randbytes(rng.choice((0, 1, 2, 4, 8)))
    return data[:a] + chunk + data[a:]


def m_delete(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    if not data:
        return None
    a, b = _span(data, rng, rng.choice((1, 4, 64, 1024)))
    return data[:a] + data[b:]


def m_truncate(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    return data[: rng.randrange(len(data))] if data else None


def m_duplicate(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    if not data:
        return None
    a, b = _span(data, rng, rng.choice((1, 8, 64, 4096)))
    c = rng.randrange(len(data) + 1)
    return data[:c] + data[a:b] + data[c:]


def m_splice(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    other = rng.choice(ctx.corpus)
    if not data or not other:
        return None
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other)) :]


def _replace(data: bytes, op: Op, new: bytes) -> bytes:
    return data[: op.pos] + new + data[op.end :]


def _pick(ops: list[Op], rng: random.Random, names: set[str] | dict) -> Op | None:
    found = [op for op in ops if op.name in names]
    return rng.choice(found) if found else None


def _int_value(rng: random.Random, old: object) -> int:
    r = rng.random()
    if r < 0.45:
        return rng.choice(BOUNDARY_INTS)
    if r < 0.75:
        return rng.choice(SMALL_INTS)
    old = old if isinstance(old, int) else 0
    return rng.choice((old + 1, old - 1, old * 2, -old, old // 2, old * 2**20))


def m_int_value(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """An integer push (a size, stride, offset, kwarg, version...) becomes a boundary value."""
    op = _pick(parse_ops(data), rng, INT_OPS)
    return None if op is None else _replace(data, op, op_int(_int_value(rng, op.arg)))


def m_huge_run(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """A run of integer pushes (a shape or stride tuple) becomes huge numbers, or one of them does."""
    ops = parse_ops(data)
    runs, run = [], []
    for op in ops:
        if op.name in INT_OPS:
            run.append(op)
        else:
            if len(run) >= 2:
                runs.append(run)
            run = []
    if not runs:
        return None
    run = rng.choice(runs)
    chosen = run if rng.random() < 0.5 else [rng.choice(run)]
    for op in sorted(chosen, key=lambda o: -o.pos):  # back to front: earlier offsets stay valid
        data = _replace(data, op, op_int(rng.choice(HUGE_INTS)))
    return data


def m_length_field(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """The length in front of a bytes/str/frame argument claims a boundary value; the data stays."""
    op = _pick(parse_ops(data), rng, LENGTH_OPS)
    if op is None:
        return None
    width, signed = LENGTH_OPS[op.name]
    value = rng.choice((*BOUNDARY_INTS, 0, 1, 255))
    bits = 8 * width
    value %= 2**bits
    if signed and value >= 2 ** (bits - 1):
        value -= 2**bits
    field = value.to_bytes(width, "little", signed=signed)
    return data[: op.pos + 1] + field + data[op.pos + 1 + width :]


def m_widen_length(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """A bytes or str argument becomes its 8-byte-length opcode claiming 2**31 .. 2**63-1 bytes."""
    op = _pick(parse_ops(data), rng, {"SHORT_BINBYTES", "BINBYTES", "SHORT_BINUNICODE", "BINUNICODE"})
    if op is None:
        return None
    raw = op.arg if isinstance(op.arg, bytes) else str(op.arg).encode("utf-8", "surrogatepass")
    code = b"\x8e" if "BYTES" in op.name else b"\x8d"  # BINBYTES8, BINUNICODE8
    claim = rng.choice((2**31, 2**32 - 1, 2**32, 2**40, 2**50, 2**63 - 1))
    return _replace(data, op, code + struct.pack("<Q", claim) + raw)


def m_memo_index(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    op = _pick(parse_ops(data), rng, MEMO_OPS)
    if op is None:
        return None
    value = rng.choice((0, 1, 2, 255, 256, 1000, 2**31 - 1, 2**31, 2**32 - 1, _int_value(rng, op.arg)))
    value %= 2**32
    code = {"BINGET": b"j", "LONG_BINGET": b"j", "BINPUT": b"r", "LONG_BINPUT": b"r"}[op.name]
    return _replace(data, op, code + struct.pack("<I", value))


def m_float_value(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    op = _pick(parse_ops(data), rng, {"BINFLOAT", "FLOAT"} | INT_OPS)
    return None if op is None else _replace(data, op, op_float(rng.choice(FLOATS)))


def m_string_swap(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """A string (a key, a class name, a dtype) becomes another one from the file or from STRINGS."""
    ops = parse_ops(data)
    strings = [op for op in ops if op.name in STRING_OPS]
    if not strings:
        return None
    op = rng.choice(strings)
    new = rng.choice(STRINGS) if rng.random() < 0.6 else str(rng.choice(strings).arg)
    return _replace(data, op, op_str(new))


def m_global_swap(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """A GLOBAL / STACK_GLOBAL names another admitted (or a refused) function."""
    ops = parse_ops(data)
    found = [i for i, op in enumerate(ops) if op.name in ("GLOBAL", "STACK_GLOBAL")]
    if not found:
        return None
    i = rng.choice(found)
    module, name = rng.choice(ADMITTED_GLOBALS if rng.random() < 0.85 else REFUSED_GLOBALS)
    if ops[i].name == "GLOBAL":
        return _replace(data, ops[i], op_global(module, name, rng))
    if i >= 2 and all(ops[j].name in STRING_OPS for j in (i - 2, i - 1)):  # the two strings STACK_GLOBAL pops
        start = Op("span", None, ops[i - 2].pos, ops[i].end)
        return _replace(data, start, op_str(module) + op_str(name) + b"\x93")
    return None


def m_op_edit(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """Delete, duplicate, or swap opcodes, or copy one elsewhere: the stack goes out of step."""
    ops = [op for op in parse_ops(data) if op.name != "PROTO"]
    if len(ops) < 2:
        return None
    op, other = rng.choice(ops), rng.choice(ops)
    chunk = data[op.pos : op.end]
    action = rng.randrange(4)
    if action == 0:
        return data[: op.pos] + data[op.end :]
    if action == 1:
        return data[: op.end] + chunk + data[op.end :]
    if action == 2:
        return data[: other.pos] + chunk + data[other.pos :]
    first, second = sorted((op, other), key=lambda o: o.pos)
    if first.end > second.pos:
        return None
    return (
        data[: first.pos]
        + data[second.pos : second.end]
        + data[first.end : second.pos]
        + data[first.pos : first.end]
        + data[second.end :]
    )


def rebuild(data: bytes, ops: list[Op], edit: Callable[[Op], bytes | None]) -> bytes:
    """`data` with each opcode for which edit() returns bytes replaced by them (None: kept as it is)."""
    out, last = bytearray(), 0
    for op in ops:
        new = edit(op)
        if new is not None:
            out += data[last : op.pos] + new
            last = op.end
    return bytes(out + data[last:])


def m_memo_bomb(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """A single value (a kwarg, a name, a flag) becomes a structure sharing itself 2**depth times.

    The structure takes the next memo slots, as a pickler would number them; the later PUTs and GETs
    move up by as many, and FRAMEs go (their lengths would be wrong).
    """
    ops = parse_ops(data)
    op = _pick(ops, rng, VALUE_OPS)
    if op is None:
        return None
    slot = 0  # memo slots filled before `op`
    for before in ops:
        if before.pos >= op.pos:
            break
        if before.name == "MEMOIZE":
            slot += 1
        elif before.name in ("BINPUT", "LONG_BINPUT", "PUT") and isinstance(before.arg, int):
            slot = max(slot, before.arg + 1)
    depth = rng.choice((1, 2, 8, 16, 24, 30, 40, 60))
    bomb = laughs(depth, slot, rng.choice((TUPLE2, b"l")))

    def edit(o: Op) -> bytes | None:
        if o is op:
            return bomb
        if o.name == "FRAME":
            return b""
        if o.pos > op.pos and o.name in MEMO_OPS and isinstance(o.arg, int) and o.arg >= slot:
            return (op_put if "PUT" in o.name else op_get)(o.arg + depth + 1)
        return None

    return rebuild(data, ops, edit)


def m_deframe(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """Protocol 4's FRAME opcodes removed: a valid pickle whose later length edits no frame contradicts."""
    frames = [op for op in parse_ops(data) if op.name == "FRAME"]
    for op in reversed(frames):
        data = data[: op.pos] + data[op.end :]
    return data if frames else None


def m_nested_blob(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """Mutate a storage blob (a legacy torch.save file inside the pickle) and put it back."""
    if ctx.depth > 0:
        return None
    ops = parse_ops(data)
    blobs = []
    for op in ops:
        if isinstance(op.arg, bytes) and op.arg.startswith(LEGACY_BLOB[:8]):
            blobs.append((op, op.arg, False))
        elif isinstance(op.arg, str) and op.arg.startswith(LEGACY_BLOB[:8].decode("latin-1")):
            blobs.append((op, op.arg.encode("latin-1", "replace"), True))  # protocol 2: _codecs.encode(str)
    if not blobs:
        return None
    op, blob, as_text = rng.choice(blobs)
    new, _ = mutate(blob, rng, Context(ctx.corpus, ctx.depth + 1), rng.randint(1, 2))
    if as_text:  # the str that _codecs.encode(str, "latin1") turns back into the blob
        text = new.decode("latin-1").encode("utf-8")
        return _replace(data, op, b"X" + struct.pack("<I", len(text)) + text)
    return _replace(data, op, b"B" + struct.pack("<I", len(new)) + new)


def m_zip(data: bytes, rng: random.Random, ctx: Context) -> bytes | None:
    """A torch.save zip checkpoint, re-packed with its pickle mutated or a tensor record resized or dropped."""
    if not data.startswith(b"PK\x03\x04") or ctx.depth > 0:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            records = [(info.filename, z.read(info.filename)) for info in z.infolist()]
    except Exception:  # noqa: BLE001 -- an earlier byte mutation broke the archive: not applicable
        return None
    action = rng.random()
    pickles = [i for i, (name, _) in enumerate(records) if name.endswith("data.pkl")]
    tensors = [i for i, (name, _) in enumerate(records) if "/data/" in name]
    if action < 0.75 and pickles:
        i = pickles[0]
        inner, _ = mutate(records[i][1], rng, Context(ctx.corpus, ctx.depth + 1), rng.randint(1, 3))
        records[i] = (records[i][0], inner)
    elif action < 0.9 and tensors:
        i = rng.choice(tensors)
        name, raw = records[i]
        records[i] = (name, raw[: rng.randrange(len(raw) + 1)] if rng.random() < 0.5 else raw + raw)
    elif tensors:
        del records[rng.choice(tensors)]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, raw in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # no clock in the bytes
            z.writestr(info, raw)
    return out.getvalue()


BYTE_MUTATIONS: dict[str, Callable] = {
    "flip": m_flip,
    "overwrite": m_overwrite,
    "insert": m_insert,
    "delete": m_delete,
    "truncate": m_truncate,
    "duplicate": m_duplicate,
    "splice": m_splice,
}
STRUCTURE_MUTATIONS: dict[str, Callable] = {
    "int_value": m_int_value,
    "huge_run": m_huge_run,
    "length_field": m_length_field,
    "widen_length": m_widen_length,
    "memo_index": m_memo_index,
    "float_value": m_float_value,
    "string_swap": m_string_swap,
    "global_swap": m_global_swap,
    "op_edit": m_op_edit,
    "memo_bomb": m_memo_bomb,
    "deframe": m_deframe,
    "nested_blob": m_nested_blob,
    "zip": m_zip,
}


def mutate(data: bytes, rng: random.Random, ctx: Context, count: int) -> tuple[bytes, list[str]]:
    """`count` mutations in a row (structure-aware ones 60% of the time); their names, in order."""
    names = []
    for _ in range(count):
        for _attempt in range(4):  # a structure-aware mutation may not apply: draw again
            if data.startswith(b"PK\x03\x04") and ctx.depth == 0 and rng.random() < 0.7:
                name = "zip"
            elif rng.random() < 0.6:
                name = rng.choice(list(STRUCTURE_MUTATIONS))
            else:
                name = rng.choice(list(BYTE_MUTATIONS))
            new = (STRUCTURE_MUTATIONS.get(name) or BYTE_MUTATIONS[name])(data, rng, ctx)
            if new is not None:
                data = new
                names.append(name)
                break
    return data, names


# ---------------------------------------------------------------------------------------------------
# Generated pickles.


class Grammar:
    """Stack-consistent random pickles in the loaders' vocabulary: every emitter pushes exactly one value.

    `chaos` (drawn per case: 0, 0.03, 0.15 or 0.4, the first most often) is the chance of each odd choice:
    an inconsistent tensor view, a random call, a field of the wrong type. At 0 the file unpickles and the
    odd values are only in the networks' kwargs and shared sub-structures, so the loaders' later stages
    (module flattening, TF conversion, building the generator) see them.
    """

    def __init__(self, rng: random.Random, blobs: list[bytes]) -> None:
        self.rng = rng
        self.blobs = blobs  # valid storage blobs: float32 storages of BLOB_SIZES elements
        self.chaos = rng.choices((0.0, 0.03, 0.15, 0.4), (4, 3, 2, 1))[0]
        self.out = bytearray()
        self.memo: list[int] = []  # memo slots holding finished values
        self.next_memo = 0
        self.budget = rng.choice((20, 200, 2000))  # values left to emit: bounds the file size

    def pickle(self) -> bytes:
        rng = self.rng
        self.out += b"\x80" + bytes([rng.choice((2, 3, 4, 5))])
        top = rng.random()
        if top < 0.5:
            self.snapshot()
        elif top < 0.7:
            self.tf_triple()
        else:
            self.value(4)
        self.out += STOP
        return bytes(self.out)

    # --- helpers ---

    def odd(self) -> bool:
        return self.rng.random() < self.chaos

    def put(self) -> int:
        i = self.next_memo
        self.next_memo += 1
        self.out += op_put(i)
        return i

    def finished(self) -> None:
        """After a value: sometimes memoise it so later values can share it."""
        if self.rng.random() < 0.3:
            self.memo.append(self.put())

    def emit(self, raw: bytes) -> Callable[[], None]:
        return lambda: self.out.extend(raw)

    def call(self, module: str, name: str, args: Callable[[], None], how: bytes = REDUCE) -> None:
        self.out += op_global(module, name, self.rng)
        args()
        self.out += how

    def tuple_of(self, *items: Callable[[], None]) -> None:
        if len(items) <= 3:
            for item in items:
                item()
            self.out += (EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3)[len(items)]
        else:
            self.out += MARK
            for item in items:
                item()
            self.out += TUPLE

    def dict_of(self, items: list[tuple[str, Callable[[], None]]], kind: str = "dict") -> None:
        """A dict, an OrderedDict (REDUCE) or an EasyDict (REDUCE or NEWOBJ), filled by SETITEMS."""
        if kind == "easydict":
            self.call("dnnlib.util", "EasyDict", self.emit(EMPTY_TUPLE), self.rng.choice((REDUCE, NEWOBJ)))
        elif kind == "ordered":
            self.call("collections", "OrderedDict", self.emit(EMPTY_TUPLE))
        else:
            self.out += EMPTY_DICT
        if items:
            self.out += MARK
            for key, value in items:
                self.out += op_str(key)
                value()
            self.out += SETITEMS

    def lit(self, value: object) -> Callable[[], None]:
        return lambda: self.literal(value)

    def literal(self, value: object) -> None:
        if value is None:
            self.out += NONE
        elif value is True or value is False:
            self.out += TRUE if value else FALSE
        elif isinstance(value, int):
            self.out += op_int(value)
        elif isinstance(value, float):
            self.out += op_float(value)
        elif isinstance(value, str):
            self.out += op_str(value)
        elif isinstance(value, bytes):
            self.out += op_bytes(value)
        elif isinstance(value, list):
            self.out += EMPTY_LIST
            if value:
                self.out += MARK
                for v in value:
                    self.literal(v)
                self.out += APPENDS
        elif isinstance(value, tuple):
            self.tuple_of(*(self.lit(v) for v in value))
        else:
            raise TypeError(f"no pickle literal for {type(value).__name__}")

    # --- values ---

    def value(self, depth: int) -> None:
        rng = self.rng
        self.budget -= 1
        if depth <= 0 or self.budget <= 0:
            self.scalar()
            return
        kinds = [(self.scalar, 24), (self.memo_ref, 8), (self.container, 16), (self.tensor, 10), (self.shape, 6),
                 (self.array, 8), (self.network, 5), (self.shared, 3), (self.module_record, 3)]  # fmt: skip
        if self.odd():
            kinds += [(self.call_any, 30), (self.garbage, 6), (self.numpy_scalar, 6), (self.storage, 6)]
        emit = rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]
        emit(depth - 1)
        self.finished()

    def scalar(self, depth: int = 0) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.4:
            self.literal(rng.choice(BOUNDARY_INTS + SMALL_INTS))
        elif r < 0.5:
            self.literal(rng.choice(FLOATS))
        elif r < 0.8:
            self.literal(rng.choice(STRINGS))
        elif r < 0.9:
            self.literal(rng.randbytes(rng.choice((0, 1, 4, 8, 64))))
        else:
            self.literal(rng.choice((None, True, False)))

    def memo_ref(self, depth: int = 0) -> None:
        if self.memo:
            self.out += op_get(self.rng.choice(self.memo))
        else:
            self.scalar()

    def container(self, depth: int = 0) -> None:
        """A tuple, list, dict, set or frozenset; a list or dict may hold itself."""
        rng = self.rng
        n = rng.choice((0, 1, 2, 3, 5))
        kind = rng.randrange(5)
        if kind == 0:
            self.tuple_of(*(lambda: self.value(depth) for _ in range(n)))
        elif kind in (1, 2):
            self.out += EMPTY_LIST if kind == 1 else EMPTY_DICT
            me = self.put() if rng.random() < 0.2 else None
            self.out += MARK
            for _ in range(n):
                if kind == 2:
                    self.literal(rng.choice(STRINGS) if rng.random() < 0.9 else rng.choice(SMALL_INTS))
                if me is None or rng.random() < 0.7:
                    self.value(depth)
                else:
                    self.out += op_get(me)  # the container holds itself
            self.out += APPENDS if kind == 1 else SETITEMS
        else:
            self.out += (EMPTY_SET if kind == 3 else b"") + MARK
            for _ in range(n):
                self.literal(rng.choice(STRINGS + SMALL_INTS))
            self.out += ADDITEMS if kind == 3 else FROZENSET

    def call_any(self, depth: int) -> None:
        """An admitted (sometimes a refused) name called with random arguments."""
        rng = self.rng
        module, name = rng.choice(ADMITTED_GLOBALS if rng.random() < 0.9 else REFUSED_GLOBALS)
        n = rng.choice((0, 1, 2, 3, 4))
        args = [lambda: self.shape(depth) if rng.random() < 0.3 else self.value(depth) for _ in range(n)]
        self.call(module, name, lambda: self.tuple_of(*args), rng.choice((REDUCE, REDUCE, REDUCE, NEWOBJ)))
        if rng.random() < 0.15:
            self.value(depth)
            self.out += BUILD

    def shape(self, depth: int = 0) -> None:
        rng = self.rng
        pool = rng.choice((SMALL_INTS, HUGE_INTS, BOUNDARY_INTS))
        self.literal(tuple(rng.choice(pool) for _ in range(rng.choice((0, 1, 2, 3, 4)))))

    def storage(self, depth: int = 0, blob: bytes | None = None) -> None:
        """torch.storage._load_from_bytes(a legacy torch.save blob)."""
        rng = self.rng
        if blob is None:
            r = rng.random()
            if r < 0.6:
                blob, _ = mutate(rng.choice(self.blobs), rng, Context(self.blobs, 1), 1)
            else:
                blob = rng.randbytes(rng.choice((0, 8, 100)))
        self.call("torch.storage", "_load_from_bytes", lambda: self.tuple_of(self.lit(blob)))

    def tensor(self, depth: int = 0) -> None:
        """_rebuild_tensor_v2(storage, offset, size, stride, ...), sometimes as a Parameter or through
        _rebuild_from_type_v2; a consistent view of a valid storage unless chaos picks odd numbers."""
        rng = self.rng
        i = rng.randrange(len(BLOB_SIZES))
        numel = BLOB_SIZES[i]
        if not self.odd():
            size = rng.choice(((numel,), (1, numel), (numel, 1), ()))
            stride = tuple(1 for _ in size)
            offset = 0 if size else rng.randrange(numel)
        else:
            size = tuple(rng.choice(SMALL_INTS + HUGE_INTS) for _ in range(rng.randint(0, 4)))
            stride = tuple(rng.choice(SMALL_INTS + HUGE_INTS) for _ in range(len(size) + rng.choice((0, 0, 1, -1))))
            offset = rng.choice((0, 0, 1, -1, 2**31, 2**63 - 1))
        blob = self.blobs[i] if not self.odd() else None
        v2 = rng.random() < 0.8
        args = [lambda: self.storage(0, blob), self.lit(offset), self.lit(size), self.lit(stride)]
        if v2:
            args += [self.lit(rng.random() < 0.1), lambda: self.dict_of([], "ordered")]
        name = "_rebuild_tensor_v2" if v2 else "_rebuild_tensor"
        r = rng.random()
        if r < 0.1:  # a Parameter: _rebuild_parameter(tensor, requires_grad, hooks)
            inner = lambda: self.call("torch._utils", name, lambda: self.tuple_of(*args))  # noqa: E731
            hooks = lambda: self.dict_of([], "ordered")  # noqa: E731
            self.call("torch._utils", "_rebuild_parameter", lambda: self.tuple_of(inner, self.lit(False), hooks))
        elif r < 0.15:  # a tensor with Python attributes: _rebuild_from_type_v2(func, type, args, state)
            module, kind = (("torch", "Tensor"), ("torch.nn.parameter", "Parameter"))[rng.randrange(2)]
            if self.odd():
                module, kind = rng.choice(ADMITTED_GLOBALS + REFUSED_GLOBALS)
            func = op_global("torch._utils", name, rng)
            state = (lambda: self.value(0)) if self.odd() else (lambda: self.dict_of([]))
            parts = (self.emit(func), self.emit(op_global(module, kind, rng)), lambda: self.tuple_of(*args), state)
            self.call("torch._tensor", "_rebuild_from_type_v2", lambda: self.tuple_of(*parts))
        else:
            self.call("torch._utils", name, lambda: self.tuple_of(*args))

    def dtype(self, spec: str = "") -> None:
        """numpy.dtype(spec, False, True) then BUILD with its (version, order, ...) state."""
        rng = self.rng
        spec = spec or rng.choice(list(ITEMSIZES))
        if self.odd():
            spec = rng.choice(("O", "U3", "V8", "S4", "M8", "x", "f4,f4", "(2,)f4"))
        self.call("numpy", "dtype", lambda: self.literal((spec, False, True)))
        if rng.random() < 0.8:
            order = rng.choice(("<", ">", "|", "="))
            state: tuple = (3, order, None, None, None, -1, -1, 0)
            if self.odd():
                state = rng.choice(((3, order, "f0"), (3, order, (2,), None, None, -1, -1, 0), (3,), ()))
            self.literal(state)
            self.out += BUILD

    def array(self, depth: int = 0) -> None:
        """A numpy array as numpy pickles one: _reconstruct + BUILD, or protocol 5's _frombuffer."""
        rng = self.rng
        shape = tuple(rng.choice((1, 2, 3, 4)) for _ in range(rng.randint(0, 3)))
        spec = rng.choice(list(ITEMSIZES))
        raw = rng.randbytes(ITEMSIZES[spec] * math.prod(shape) if not self.odd() else rng.choice((0, 3, 64)))
        dtype = lambda: self.dtype(spec)  # noqa: E731
        if self.odd():
            shape = tuple(rng.choice(HUGE_INTS + SMALL_INTS) for _ in range(rng.randint(1, 3)))
        r = rng.random()
        if r < 0.75 or self.chaos == 0:
            reconstruct = (self.emit(op_global("numpy", "ndarray", rng)), self.lit((0,)), self.lit(b"b"))
            self.call("numpy.core.multiarray", "_reconstruct", lambda: self.tuple_of(*reconstruct))
            fortran = rng.random() < 0.2
            self.tuple_of(self.lit(1), self.lit(shape), dtype, self.lit(fortran), self.lit(raw))
            self.out += BUILD
        elif r < 0.9:
            order = rng.choice(("C", "F", "K", 0))
            parts = (self.lit(raw), dtype, self.lit(shape), self.lit(order))
            self.call("numpy.core.numeric", "_frombuffer", lambda: self.tuple_of(*parts))
        else:  # numpy.ndarray(shape, dtype) called directly: what no real pickle does, often asking for a lot
            spec = rng.choice(("f8", "f4", "u1", "b1"))
            shape = rng.choice(((2**33,), (2**31, 4), (10**9,), (2**40, 2**40), shape))
            self.call("numpy", "ndarray", lambda: self.tuple_of(self.lit(shape), self.lit(spec)))

    def numpy_scalar(self, depth: int = 0) -> None:
        data = self.rng.randbytes(self.rng.choice((4, 8, 1, 0)))
        self.call("numpy.core.multiarray", "scalar", lambda: self.tuple_of(lambda: self.dtype(), self.lit(data)))

    def garbage(self, depth: int = 0) -> None:
        """A random opcode with a random argument: the stream may well stop making sense here."""
        self.out += random_op(self.rng)

    def shared(self, depth: int = 0) -> None:
        """A structure holding its previous level twice: 2**levels leaves from O(levels) opcodes."""
        rng = self.rng
        levels = rng.choice((2, 8, 16, 24, 32, 48))
        self.out += laughs(levels, self.next_memo, rng.choice((TUPLE2, b"l")))
        self.next_memo += levels + 1

    # --- networks ---

    def kwargs(self, depth: int) -> None:
        """A Generator's init_kwargs: the seeds' names with odd values (KWARG_VALUES), sometimes shared."""
        rng = self.rng

        def pick(name: str) -> Callable[[], None]:
            r = rng.random()
            if r < 0.05:
                return self.shared
            if r < 0.05 + self.chaos / 4:
                return lambda: self.value(depth)
            values = KWARG_VALUES[name]  # the seed's value first: most kwargs must pass for the odd one to matter
            return self.lit(values[0] if rng.random() < 0.6 else rng.choice(values))

        def sub(names: tuple[str, ...]) -> Callable[[], None]:
            items = [(n, pick(n)) for n in names if rng.random() < 0.6]
            return lambda: self.dict_of(items, rng.choice(("dict", "easydict", "easydict")))

        top = [
            (n, pick(n)) for n in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if rng.random() < 0.97
        ]
        mapping = ("num_layers", "layer_features", "embed_features", "activation", "lr_multiplier", "w_avg_beta")
        synthesis = ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
                     "use_noise")  # fmt: skip
        if rng.random() < 0.9:
            top.append(("mapping_kwargs", sub(mapping)))
        if rng.random() < 0.9:
            top.append(("synthesis_kwargs", sub(synthesis)))
        if self.odd():
            top.append((rng.choice(STRINGS), self.lit(rng.choice(SMALL_INTS))))
        rng.shuffle(top)
        self.dict_of(top)

    def module_state(
        self,
        depth: int,  # how many levels of child modules may follow
        persistent: bool,  # a persistent class: _init_kwargs and _init_args too
        children: list[tuple[str, Callable[[], None]]] | None = None,  # given, or drawn here
    ) -> Callable[[], None]:
        """A torch.nn.Module's __dict__: _parameters, _buffers, _modules, ..."""
        rng = self.rng
        names = ("weight", "bias", "w_avg", "const", "noise_const", "resample_filter")
        params = [(n, (lambda: self.value(depth)) if self.odd() else self.tensor) for n in names[: rng.randint(0, 3)]]
        buffers = [(n, self.tensor) for n in names[3 : 3 + rng.randint(0, 2)]]
        if rng.random() < 0.1:
            params.append(("unused", self.lit(None)))
        if children is None:
            children = []
            for name in ("mapping", "synthesis", "fc0", "b4")[: rng.randint(0, 3) if depth > 0 else 0]:
                r = rng.random()
                if r < 0.15 and self.memo:
                    children.append((name, self.memo_ref))  # maybe a module shared with a sibling
                elif r < 0.9:
                    children.append((name, lambda: self.network(depth - 1)))
                else:
                    children.append((name, self.lit(None)))
        items = [
            ("_parameters", lambda: self.dict_of(params, "ordered")),
            ("_buffers", lambda: self.dict_of(buffers, "ordered")),
            ("_modules", lambda: self.dict_of(children, "ordered")),
            ("training", self.lit(False)),
        ]
        if rng.random() < 0.5:
            skip = rng.choice((("noise_const",), ("w_avg", "const"), ()))
            items.append(("_non_persistent_buffers_set", lambda: self.literal_set(skip)))
        if persistent:
            items += [("_init_kwargs", lambda: self.kwargs(depth)), ("_init_args", self.lit(()))]
        if self.odd():  # one field holds anything
            k = rng.randrange(len(items))
            items[k] = (items[k][0], lambda: self.value(depth))
        rng.shuffle(items)
        return lambda: self.dict_of(items)

    def literal_set(self, names: tuple[str, ...]) -> None:
        self.out += EMPTY_SET
        if names:
            self.out += MARK
            for n in names:
                self.literal(n)
            self.out += ADDITEMS

    def network(self, depth: int, children: list[tuple[str, Callable[[], None]]] | None = None) -> None:
        """REDUCE(_reconstruct_persistent_obj, ({type, version, module_src, class_name, state},)), as NVIDIA's
        persistence module pickles a network."""
        rng = self.rng
        if depth < 0:
            self.scalar()
            return
        class_name = "Generator" if rng.random() < 0.85 else rng.choice(("Discriminator", "MappingNetwork", ""))
        meta = [
            ("type", self.lit(rng.choice(STRINGS) if self.odd() else "class")),
            ("version", self.lit(rng.choice(BOUNDARY_INTS) if self.odd() else 6)),
            ("module_src", self.lit("x = 1\n" if rng.random() < 0.1 else "")),
            ("class_name", self.lit(class_name)),
            ("state", self.module_state(depth, persistent=True, children=children)),
        ]
        if self.odd():
            del meta[rng.randrange(len(meta))]
        self.call(
            "torch_utils.persistence", "_reconstruct_persistent_obj", lambda: self.tuple_of(lambda: self.dict_of(meta))
        )
        self.finished()

    def network_dag(self) -> None:
        """A network whose every level holds the level below twice: 2**levels paths to the leaf module."""
        levels = self.rng.choice((2, 6, 12, 20, 28, 40))
        self.network(0)
        below = self.put()
        for _ in range(levels):
            self.out += POP  # the level below lives on in the memo only
            pair = [("a", self.emit(op_get(below))), ("b", self.emit(op_get(below)))]
            self.network(1, children=pair)
            below = self.put()

    def module_record(self, depth: int) -> None:
        """A plain torch.nn module (Linear, ModuleList, ...): NEWOBJ of the class, then BUILD with its __dict__."""
        rng = self.rng
        module, name = rng.choice(ADMITTED_GLOBALS[-4:])
        self.call(module, name, self.emit(EMPTY_TUPLE), NEWOBJ)
        (self.module_state(depth, persistent=False) if not self.odd() else lambda: self.value(depth))()
        self.out += BUILD

    def snapshot(self) -> None:
        """What stylegan2-ada-pytorch's training loop pickles: {"G", "D", "G_ema", ...}."""
        rng = self.rng
        g_ema = self.network_dag if rng.random() < 0.15 else lambda: self.network(rng.choice((1, 2, 3)))
        items = [("G_ema", g_ema)]
        if rng.random() < 0.5:
            items.append(("G", self.memo_ref if rng.random() < 0.5 else lambda: self.network(1)))
        if rng.random() < 0.3:
            items.append(("D", lambda: self.value(2)))
        if rng.random() < 0.3:
            items.append(("augment_pipe", self.lit(None)))
        if self.odd():
            items[0] = (rng.choice(STRINGS), items[0][1])
        rng.shuffle(items)
        self.dict_of(items)

    def tf_network(self, depth: int) -> None:
        """NEWOBJ(dnnlib.tflib.network.Network), then BUILD with its state: {version, name, static_kwargs,
        components, variables}."""
        rng = self.rng
        self.call("dnnlib.tflib.network", "Network", self.emit(EMPTY_TUPLE), NEWOBJ)
        tf_names = ("dlatent_avg", "Dense0/weight", "Dense0/bias", "4x4/Const/const", "noise0", "4x4/Conv/weight")

        def variables() -> None:
            self.out += EMPTY_LIST
            count = rng.choice((0, 1, 3, 8))
            if count:
                self.out += MARK
                for _ in range(count):
                    name = self.lit(rng.choice(tf_names))
                    self.tuple_of(name, (lambda: self.value(depth)) if self.odd() else self.array)
                self.out += APPENDS

        def static_kwargs() -> None:
            names = ("latent_size", "dlatent_size", "resolution", "num_channels", "mapping_layers", "fmap_base",
                     "fmap_max", "architecture", "resample_kernel", "use_noise", "truncation_psi",
                     "fmap_decay")  # fmt: skip
            pool = {"architecture": ("skip", "orig", "resnet", "x"), "resample_kernel": ([1, 3, 3, 1], [], None)}
            items = []
            for n in names:
                if rng.random() < (0.05 if n in ("fmap_decay", "truncation_psi") else 0.6):
                    values = pool.get(n, (8, 16, 0, -1, 3, 4, 2**31, 10**9, 0.5, None))
                    items.append((n, self.lit(rng.choice(values)) if rng.random() < 0.95 else self.shared))
            self.dict_of(items, rng.choice(("dict", "easydict")))

        components = [(n, lambda: self.tf_network(depth - 1)) for n in ("mapping", "synthesis")[: rng.randint(0, 2)]]
        state = [
            ("version", self.lit(4 if not self.odd() else rng.choice((3, 2**63 - 1, -1)))),
            ("name", self.lit(rng.choice(("G", "G_mapping", "G_synthesis", "")))),
            ("static_kwargs", static_kwargs),
            ("components", lambda: self.dict_of(components if depth > 0 else [], "easydict")),
            ("build_module_src", self.lit("")),
            ("build_func_name", self.lit("training.networks_stylegan2.G_main")),
            ("variables", variables),
        ]
        self.dict_of(state)
        self.out += BUILD
        self.finished()

    def tf_triple(self) -> None:
        """(G, D, Gs); Gs is often G itself."""
        rng = self.rng
        self.out += MARK
        self.tf_network(2)
        slot = self.put() if rng.random() < 0.5 else None
        if not self.odd():
            self.tf_network(0)
        else:
            self.value(1)
        if slot is not None:
            self.out += op_get(slot)
        else:
            self.tf_network(2)
        self.out += TUPLE


def random_op(rng: random.Random) -> bytes:
    """One opcode chosen uniformly, with an argument of its declared form (lengths sometimes lying)."""
    op = pickletools.opcodes[rng.randrange(len(pickletools.opcodes))]
    code = op.code.encode("latin-1")
    arg = op.arg
    if arg is None:
        return code
    name = arg.name

    def number(width: int, signed: bool) -> bytes:
        v = rng.choice(BOUNDARY_INTS + SMALL_INTS) if rng.random() < 0.5 else rng.randrange(256)
        v %= 2 ** (8 * width)
        if signed and v >= 2 ** (8 * width - 1):
            v -= 2 ** (8 * width)
        return v.to_bytes(width, "little", signed=signed)

    def counted(width: int, payload: bytes) -> bytes:
        n = len(payload) if rng.random() < 0.9 else rng.choice(BOUNDARY_INTS)
        return (n % 2 ** (8 * width)).to_bytes(width, "little") + payload

    payload = rng.randbytes(rng.choice((0, 1, 3, 16)))
    text = rng.choice(STRINGS).encode()
    if name == "uint1":
        return code + number(1, False)
    if name == "uint2":
        return code + number(2, False)
    if name == "int4":
        return code + number(4, True)
    if name == "uint4":
        return code + number(4, False)
    if name == "uint8":
        return code + number(8, False)
    if name == "long1":
        return code + counted(1, pickle.encode_long(rng.choice(BOUNDARY_INTS)))
    if name == "long4":
        return code + counted(4, pickle.encode_long(rng.choice(BOUNDARY_INTS)))
    if name in ("string1", "bytes1"):
        return code + counted(1, payload)
    if name in ("string4", "bytes4"):
        return code + counted(4, payload)
    if name in ("bytes8", "bytearray8"):
        return code + counted(8, payload)
    if name == "unicodestring1":
        return code + counted(1, text)
    if name == "unicodestring4":
        return code + counted(4, text)
    if name == "unicodestring8":
        return code + counted(8, text)
    if name == "stringnl_noescape_pair":
        module, attr = rng.choice(ADMITTED_GLOBALS + REFUSED_GLOBALS)
        return code + module.encode() + b"\n" + attr.encode() + b"\n"
    if name in ("stringnl", "stringnl_noescape"):
        return code + repr(rng.choice(STRINGS)).encode() + b"\n"
    if name == "unicodestringnl":
        return code + text + b"\n"
    if name in ("decimalnl_short", "decimalnl_long"):
        return code + str(rng.choice(BOUNDARY_INTS)).encode() + (b"L" if name.endswith("long") else b"") + b"\n"
    if name == "floatnl":
        return code + repr(rng.choice(FLOATS)).encode() + b"\n"
    if name == "float8":
        return code + struct.pack(">d", rng.choice(FLOATS))
    return code + payload


def random_opstream(rng: random.Random) -> bytes:
    body = b"".join(random_op(rng) for _ in range(rng.choice((1, 4, 16, 64, 256))))
    return b"\x80" + bytes([rng.choice((2, 3, 4, 5))]) + body + (STOP if rng.random() < 0.8 else b"")


# ---------------------------------------------------------------------------------------------------
# The corpus: small valid files, the same bytes in every process.


def canonical_legacy(data: bytes) -> bytes:
    """A legacy torch.save file with its storage keys (memory addresses) renamed 0, 1, ... at the same widths."""
    keys = []
    for op in parse_ops(data):
        if op.name == "BINUNICODE" and isinstance(op.arg, str) and op.arg.isdigit() and op.arg not in keys:
            keys.append(op.arg)
    for i, key in enumerate(keys):
        encoded = b"X" + struct.pack("<I", len(key))
        data = data.replace(encoded + key.encode(), encoded + str(i).zfill(len(key)).encode())
    return data


def _storage_blob(storage: object) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(storage, buffer, _use_new_zipfile_serialization=False)
    return canonical_legacy(buffer.getvalue())


def _dump(obj: object, protocol: int) -> bytes:
    """pickle.dumps with NVIDIA's names in place and canonical storage blobs (see test_safe_pickle.dump)."""
    import torch
    from test_safe_pickle import nvidia_names

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj: object) -> object:
            if isinstance(obj, torch.storage.TypedStorage | torch.UntypedStorage):
                return torch.storage._load_from_bytes, (_storage_blob(obj),)
            return NotImplemented

    buffer = io.BytesIO()
    with nvidia_names(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but it is how tensors pickle
        Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def build_corpus() -> dict[str, bytes]:
    """{seed name: file bytes} for SEED_FILES (needs pytest's test modules on sys.path)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import torch
    from test_bigbigan import random_reference_state
    from test_safe_pickle import EasyDict, Network, mirror, tf_variables

    from mlvgm.generators.stylegan2 import StyleGAN2

    def easy(kwargs: dict) -> dict:
        return {k: EasyDict(v) if isinstance(v, dict) else v for k, v in kwargs.items()}

    corpus = {}
    torch.manual_seed(0)
    g = StyleGAN2(**STYLEGAN2_KWARGS)
    for protocol in (2, 4):
        snapshot = {"G_ema": mirror(g, "Generator", easy(STYLEGAN2_KWARGS)), "augment_pipe": None}
        corpus[f"sg2-p{protocol}"] = _dump(snapshot, protocol)

    torch.manual_seed(1)
    top, mapping, synthesis = tf_variables(StyleGAN2(**TF_STYLEGAN2_KWARGS))
    components = {"mapping": Network("G_mapping", {}, mapping), "synthesis": Network("G_synthesis", {}, synthesis)}
    static = dict(
        latent_size=8, dlatent_size=8, resolution=16, num_channels=3, mapping_layers=2, fmap_base=32, fmap_max=8
    )
    gs = Network("G", static, top, components)
    d = Network("D", {}, {"Output/weight": torch.zeros(1, 1).numpy()})
    corpus["tf"] = _dump((gs, d, gs), 4)

    state = random_reference_state(BIGBIGAN_OPTIONS, seed=0)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    corpus["bigbigan-zip"] = buffer.getvalue()
    # The legacy format writes storages in the order of their memory addresses: with every tensor a view
    # of one storage, there is one, and the file is the same bytes every time.
    flat = torch.cat([v.reshape(-1) for v in state.values()])
    offsets = [0, *torch.tensor([v.numel() for v in state.values()]).cumsum(0).tolist()]
    shared = {k: flat[offsets[i] : offsets[i + 1]].view(v.shape) for i, (k, v) in enumerate(state.items())}
    buffer = io.BytesIO()
    torch.save(shared, buffer, _use_new_zipfile_serialization=False)
    corpus["bigbigan-legacy"] = canonical_legacy(buffer.getvalue())
    return corpus


def storage_blobs() -> list[bytes]:
    """Valid storage blobs for the grammar: float32 storages of BLOB_SIZES elements."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [_storage_blob(torch.arange(n, dtype=torch.float32).storage()) for n in BLOB_SIZES]


def write_corpus(folder: Path) -> dict[str, str]:
    """Write the seeds and storage blobs into `folder`; {name: sha256 prefix} of each file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {SEED_FILES[name]: data for name, data in build_corpus().items()}
    files |= {f"blob{i}.bin": blob for i, blob in enumerate(storage_blobs())}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: hashlib.sha256(data).hexdigest()[:16] for name, data in sorted(files.items())}


@dataclass(frozen=True)
class Corpus:
    seeds: dict[str, bytes]  # seed name -> bytes
    blobs: list[bytes]

    @classmethod
    def read(cls, folder: Path) -> Corpus:
        seeds = {name: (folder / file).read_bytes() for name, file in SEED_FILES.items()}
        blobs = [(folder / f"blob{i}.bin").read_bytes() for i in range(len(BLOB_SIZES))]
        return cls(seeds, blobs)


# ---------------------------------------------------------------------------------------------------
# Cases.


@dataclass(frozen=True)
class Case:
    index: int
    kind: str  # a seed name, "grammar" or "opstream"
    mutations: tuple[str, ...]
    target: str  # one of TARGETS
    data: bytes


def make_case(master_seed: int, index: int, corpus: Corpus) -> Case:
    """Case `index` of campaign `master_seed`: a function of the two numbers and the corpus only."""
    rng = random.Random(f"mlvgm-fuzz-loaders:{master_seed}:{index}")
    kind = rng.choices(list(KIND_WEIGHTS), list(KIND_WEIGHTS.values()))[0]
    target = rng.choices(TARGETS, TARGET_WEIGHTS[kind])[0]
    ctx = Context(list(corpus.seeds.values()))
    count = min(1 + int(rng.expovariate(0.7)), 8)
    if kind in corpus.seeds:
        data, names = mutate(corpus.seeds[kind], rng, ctx, count)
    else:
        data = Grammar(rng, corpus.blobs).pickle() if kind == "grammar" else random_opstream(rng)
        names = []
        if rng.random() < 0.4:
            data, names = mutate(data, rng, ctx, count)
    return Case(index, kind, tuple(names), target, data)


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case: a BaseException, so `except Exception` in a loader cannot swallow it."""


_armed = False


def _on_alarm(signum: int, frame: object) -> None:
    if _armed:
        raise CaseTimeout


def run_target(target: str, path: Path) -> object:
    from mlvgm.generators import load_generator
    from mlvgm.generators.safe_pickle import safe_load_pickle

    if target == "safe_load_pickle":
        return safe_load_pickle(path)
    if target == "stylegan2":
        return load_generator(f"stylegan2:{path}")
    return load_generator(f"bigbigan:{path},{BIGBIGAN_SPEC_OPTIONS}")


def where(exc: BaseException) -> str:
    """The innermost mlvgm frame an exception passed through (and the innermost frame, when that is elsewhere)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).name != Path(__file__).name]
    if not frames:
        return "?"
    ours = [f for f in frames if "/mlvgm/" in f.filename]
    text = lambda f: f"{Path(f.filename).name}:{f.lineno} {f.name}"  # noqa: E731
    if not ours or ours[-1] is frames[-1]:
        return text(frames[-1])
    return f"{text(ours[-1])} (innermost {text(frames[-1])})"


def classify(target: str, path: Path, timeout: float) -> tuple[str, str, str]:
    """(outcome, exception type, first line of its message) of one run of `target` on `path`; for the
    failures the message ends with where it happened."""
    global _armed
    from mlvgm.errors import InputError

    signal.setitimer(signal.ITIMER_REAL, timeout)
    _armed = True
    try:
        run_target(target, path)
    except CaseTimeout as exc:
        return "timeout", "CaseTimeout", f"no answer within {timeout:g} s, interrupted in {where(exc)}"
    except InputError as exc:
        text = str(exc)
        kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
        if not text.strip() or "\n" in text:
            return "bad_message", kind, (text.strip().splitlines() or [""])[0][:300]
        return "input_error", kind, text[:300]
    except MemoryError as exc:
        return "memory_error", "MemoryError", f"{(str(exc).strip().splitlines() or [''])[0][:200]} [{where(exc)}]"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 -- every other outcome is what the fuzzer reports
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return "exception", f"{type(exc).__module__}.{type(exc).__qualname__}", f"{first} [{where(exc)}]"
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    return "ok", "", ""


def failure_class(outcome: str, target: str, kind: str, message: str, path: str = "") -> str:
    """What groups failures: outcome, target, exception type and the message with numbers and paths blanked."""
    text = message.replace(path, "<file>") if path else message
    text = re.sub(r"/\S+", "<path>", text)
    text = re.sub(r"0x[0-9a-fA-F]+", "0xN", text)
    text = re.sub(r"\d+", "N", text)[:160]
    return f"{outcome} | {target} | {kind} | {text}"


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def child_main(args: argparse.Namespace) -> int:
    """Run cases [start, stop) of a campaign; one JSON line per case in `results`."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    work = Path(args.work)
    corpus = Corpus.read(Path(args.seeds))
    case_path = work / f"w{args.worker}.case.bin"
    failures = work / "failures"
    failures.mkdir(exist_ok=True)
    signal.signal(signal.SIGALRM, _on_alarm)
    # Warm-up on the untouched seeds: each must load, and lazy allocations happen before the cap.
    for name, data in corpus.seeds.items():
        case_path.write_bytes(data)
        target = "bigbigan" if name.startswith("bigbigan") else "stylegan2"
        outcome = classify(target, case_path, 60.0)
        if outcome[0] != "ok":
            print(f"seed {name} does not load: {outcome}", file=sys.stderr)
            return 3
    limit = _vm_size() + int(args.memory_margin_gib * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    status = os.open(work / f"w{args.worker}.status", os.O_WRONLY | os.O_CREAT, 0o644)
    results = os.open(work / f"w{args.worker}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved: collections.Counter[str] = collections.Counter()
    for index in range(args.start, args.stop):
        os.pwrite(status, f"{index:>20}\n".encode(), 0)
        started = time.perf_counter()
        try:
            case = make_case(args.master_seed, index, corpus)
            case_path.write_bytes(case.data)
        except Exception as exc:  # noqa: BLE001 -- a bug in this file: reported, not mistaken for the loader's
            record = dict(i=index, outcome="fuzzer_error", type=type(exc).__name__, message=str(exc)[:300])
            os.write(results, (json.dumps(record) + "\n").encode())
            continue
        if index == args.selftest_crash_at:  # the parent's tests: a child killed in a case (as by the OOM killer)
            os.kill(os.getpid(), signal.SIGKILL)
        if index == args.selftest_hang_at:  # ... and one stuck where SIGALRM cannot reach it
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(3600)
        try:
            outcome, kind, message = classify(case.target, case_path, args.case_timeout)
        except CaseTimeout:  # the alarm fired as the case returned, before it was disarmed
            outcome, kind, message = "timeout", "CaseTimeout", f"no answer within {args.case_timeout:g} s"
        record = dict(i=index, kind=case.kind, target=case.target, outcome=outcome)
        if outcome not in ALLOWED_OUTCOMES:
            key = failure_class(outcome, case.target, kind, message, str(case_path))
            record |= dict(type=kind, message=message.replace(str(case_path), "<file>"), mutations=case.mutations)
            record["cls"] = key
            saved[key] += 1
            if saved[key] <= args.keep:
                digest = hashlib.sha256(key.encode()).hexdigest()[:10]
                file = failures / f"{digest}-{index}.bin"
                shutil.copyfile(case_path, file)
                record["file"] = str(file)
        record["ms"] = round(1000 * (time.perf_counter() - started), 1)
        os.write(results, (json.dumps(record) + "\n").encode())
        if index % 200 == 0:
            import gc

            gc.collect()  # adversarial pickles build reference cycles
    os.pwrite(status, f"{'done':>20}\n".encode(), 0)
    return 0


# ---------------------------------------------------------------------------------------------------
# The parent: children over ranges of cases, restarted after a crash, results summed.


@dataclass
class _Worker:
    number: int
    stop: int
    next_index: int
    process: subprocess.Popen | None = None
    running: str = ""  # the status when last seen
    since: float = 0.0  # when that status was first seen
    spawned: int = 0


def run_campaign(
    master_seed: int,  # every case is a function of (master_seed, index)
    cases: int,  # indices 0 .. cases - 1
    work: Path,  # scratch folder: corpus, status, results, failures/
    *,
    workers: int = 1,  # children running in parallel, each over a contiguous range
    case_timeout: float = 10.0,  # seconds per case before SIGALRM counts it as a timeout
    hang_timeout: float | None = None,  # seconds without progress before the child is killed (C loops)
    memory_margin_gib: float = 2.0,  # address space above the child's VmSize after warm-up
    keep: int = 3,  # files saved per failure class and worker
    selftest_crash_at: int = -1,  # tests of this function: the child dies at this case
    selftest_hang_at: int = -1,  # ... or stops responding at this one
) -> dict:
    """Run a campaign and return its summary (see `format_summary`)."""
    work.mkdir(parents=True, exist_ok=True)
    digests = write_corpus(work / "seeds")
    corpus = Corpus.read(work / "seeds")
    hang_timeout = hang_timeout or 3 * case_timeout + 20
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONHASHSEED": "0"}
    bounds = [cases * w // workers for w in range(workers + 1)]
    pool = [_Worker(w, bounds[w + 1], bounds[w]) for w in range(workers)]
    extra: list[dict] = []  # crashes and hangs, seen by the parent
    started = time.monotonic()

    def spawn(worker: _Worker) -> None:
        (work / f"w{worker.number}.status").write_text("")
        command = [
            sys.executable, str(Path(__file__).resolve()), "child", "--master-seed", str(master_seed),
            "--start", str(worker.next_index), "--stop", str(worker.stop), "--worker", str(worker.number),
            "--seeds", str(work / "seeds"), "--work", str(work), "--case-timeout", str(case_timeout),
            "--memory-margin-gib", str(memory_margin_gib), "--keep", str(keep),
            "--selftest-crash-at", str(selftest_crash_at), "--selftest-hang-at", str(selftest_hang_at),
        ]  # fmt: skip
        with open(work / f"w{worker.number}.log", "ab") as log:  # the child keeps its own descriptor
            worker.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=HERE)
        worker.running, worker.since, worker.spawned = "", time.monotonic(), worker.spawned + 1

    def lost(worker: _Worker, outcome: str, detail: str, message: str) -> None:
        text = (work / f"w{worker.number}.status").read_text().strip()
        if not text.isdigit():
            log = (work / f"w{worker.number}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"fuzz child {worker.number} died outside a case ({detail}):\n{log}")
        index = int(text)
        case = make_case(master_seed, index, corpus)
        key = failure_class(outcome, case.target, detail, "")
        file = work / "failures" / f"{outcome}-{index}.bin"
        file.parent.mkdir(exist_ok=True)
        file.write_bytes(case.data)
        extra.append(dict(i=index, kind=case.kind, target=case.target, outcome=outcome, type=detail, message=message,
                          mutations=list(case.mutations), cls=key, file=str(file)))  # fmt: skip
        worker.next_index = index + 1

    for worker in pool:
        if worker.next_index < worker.stop:
            spawn(worker)
    while any(w.process is not None for w in pool):
        time.sleep(0.05)
        for worker in pool:
            process = worker.process
            if process is None:
                continue
            rc = process.poll()
            if rc is None:
                text = (work / f"w{worker.number}.status").read_text().strip()
                if text != worker.running:
                    worker.running, worker.since = text, time.monotonic()
                elif text.isdigit() and time.monotonic() - worker.since > hang_timeout:
                    process.kill()
                    process.wait()
                    lost(worker, "hang", "SIGKILL", f"no progress for {hang_timeout:g} s: the parent killed the child")
                    worker.process = None
                    if worker.next_index < worker.stop:
                        spawn(worker)
                continue
            worker.process = None
            if rc == 0:
                continue
            reason = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
            lost(worker, "crash", reason, "the child process died in this case")
            if worker.next_index < worker.stop:
                spawn(worker)
    seconds = time.monotonic() - started

    records = extra[:]
    for w in range(workers):
        path = work / f"w{w}.jsonl"
        if path.exists():
            records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return summarise(records, master_seed=master_seed, cases=cases, workers=workers, seconds=seconds,
                     corpus=digests, restarts=sum(w.spawned - 1 for w in pool))  # fmt: skip


def summarise(records: list[dict], **about: object) -> dict:
    outcomes: collections.Counter[str] = collections.Counter()
    by_target: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    by_kind: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    classes: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: r["i"]):
        outcomes[r["outcome"]] += 1
        by_target[r.get("target", "?")][r["outcome"]] += 1
        by_kind[r.get("kind", "?")][r["outcome"]] += 1
        if r["outcome"] not in ALLOWED_OUTCOMES:
            key = r.get("cls") or failure_class(
                r["outcome"], r.get("target", "?"), r.get("type", "?"), r.get("message", "")
            )
            first = dict(outcome=r["outcome"], target=r.get("target"), type=r.get("type"), message=r.get("message"))
            entry = classes.setdefault(key, first | dict(count=0, cases=[], kinds=set(), files=[]))
            entry["count"] += 1
            entry["kinds"].add(r.get("kind"))
            if len(entry["cases"]) < 5:
                entry["cases"].append(r["i"])
            if r.get("file") and len(entry["files"]) < 3:
                entry["files"].append(r["file"])
            entry.setdefault("mutations", r.get("mutations"))
    for entry in classes.values():
        entry["kinds"] = sorted(k for k in entry["kinds"] if k)
    seen = len({r["i"] for r in records})
    return dict(
        about,
        seen=seen,
        failures=sum(n for o, n in outcomes.items() if o not in ALLOWED_OUTCOMES),
        outcomes=dict(outcomes),
        targets={t: dict(c) for t, c in sorted(by_target.items())},
        kinds={k: dict(c) for k, c in sorted(by_kind.items())},
        classes=sorted(classes.values(), key=lambda e: -e["count"]),
    )


def format_summary(summary: dict) -> str:
    cases, seconds = summary["cases"], summary["seconds"]
    columns = [*ALLOWED_OUTCOMES, *FAILURE_OUTCOMES]
    lines = [
        f"fuzzed {summary['seen']} of {cases} cases (master seed {summary['master_seed']}, {summary['workers']} "
        f"worker(s), {summary['restarts']} restart(s)) in {seconds:.1f} s: "
        f"{1000 * seconds / max(cases, 1):.1f} s per 1000 cases; {summary['failures']} failure(s)",
        "corpus: " + ", ".join(f"{k} {v}" for k, v in summary["corpus"].items()),
        "",
        f"{'':>18}" + "".join(f"{c:>13}" for c in columns),
        f"{'all':>18}" + "".join(f"{summary['outcomes'].get(c, 0):>13}" for c in columns),
    ]
    for title, table in (("target", summary["targets"]), ("kind", summary["kinds"])):
        lines.append(f"by {title}:")
        for name, counts in table.items():
            lines.append(f"{name:>18}" + "".join(f"{counts.get(c, 0):>13}" for c in columns))
    if summary["classes"]:
        lines.append(f"\n{len(summary['classes'])} failure class(es):")
        for e in summary["classes"]:
            lines.append(
                f"  {e['count']:>6} x {e['outcome']} in {e['target']}: {e['type']}: {e['message']}\n"
                f"         cases {e['cases']} (kinds {', '.join(e['kinds'])}; first mutations {e.get('mutations')})"
                + (f"\n         files {', '.join(e['files'])}" if e["files"] else "")
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command line.


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    child = sub.add_parser("child", help="(internal) run a range of cases")
    child.add_argument("--master-seed", type=int, required=True)
    child.add_argument("--start", type=int, required=True)
    child.add_argument("--stop", type=int, required=True)
    child.add_argument("--worker", type=int, default=0)
    child.add_argument("--seeds", required=True)
    child.add_argument("--work", required=True)
    child.add_argument("--case-timeout", type=float, default=10.0)
    child.add_argument("--memory-margin-gib", type=float, default=2.0)
    child.add_argument("--keep", type=int, default=3)
    child.add_argument("--selftest-crash-at", type=int, default=-1)
    child.add_argument("--selftest-hang-at", type=int, default=-1)
    run = sub.add_parser("run", help="a campaign, summary printed")
    run.add_argument("--master-seed", type=int, default=14)
    run.add_argument("--cases", type=int, default=10000)
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--case-timeout", type=float, default=10.0)
    run.add_argument("--out", required=True, help="work folder (failures/ holds the offending files)")
    case = sub.add_parser("case", help="write (and run) one case, to reproduce a failure")
    case.add_argument("--master-seed", type=int, default=14)
    case.add_argument("--index", type=int, required=True)
    case.add_argument("--out", required=True, help="where to write the case's file")
    case.add_argument("--run", action="store_true", help="then run its target here, with a traceback")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    if args.command == "child":
        return child_main(args)
    if args.command == "run":
        summary = run_campaign(args.master_seed, args.cases, Path(args.out), workers=args.workers,
                               case_timeout=args.case_timeout)  # fmt: skip
        print(format_summary(summary))
        (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=1, default=list))
        return 1 if summary["failures"] else 0
    folder = Path(args.out).with_suffix(".seeds")
    write_corpus(folder)
    c = make_case(args.master_seed, args.index, Corpus.read(folder))
    Path(args.out).write_bytes(c.data)
    print(f"case {c.index}: kind {c.kind}, mutations {list(c.mutations)}, target {c.target}, {len(c.data)} bytes")
    spec = {"safe_load_pickle": "safe_load_pickle({})", "stylegan2": "load_generator('stylegan2:{}')",
            "bigbigan": f"load_generator('bigbigan:{{}},{BIGBIGAN_SPEC_OPTIONS}')"}[c.target]  # fmt: skip
    print("reproduce with:", spec.format(args.out))
    if args.run:
        warnings.simplefilter("ignore")
        run_target(c.target, Path(args.out))
        print("loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
