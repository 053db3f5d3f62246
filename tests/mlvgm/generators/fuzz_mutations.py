"""Mutations for the loader fuzzer (fuzz_loaders.py): byte-level and structure-aware edits of a file (the m_*
functions, by name in BYTE_MUTATIONS and STRUCTURE_MUTATIONS), and `mutate`, which applies a few in a row.
"""

from __future__ import annotations

import io
import pickletools
import random
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from fuzz_opcodes import (
    ADMITTED_GLOBALS,
    BOUNDARY_INTS,
    FLOATS,
    HUGE_INTS,
    REFUSED_GLOBALS,
    SMALL_INTS,
    STRINGS,
    TUPLE2,
    Op,
    laughs,
    op_float,
    op_get,
    op_global,
    op_int,
    op_put,
    op_str,
    parse_ops,
)

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
