"""Generated pickles for the loader fuzzer (fuzz_loaders.py): `Grammar` builds stack-consistent pickles in
the loaders' vocabulary, `random_opstream` random opcodes with well-formed arguments (`random_op`).
"""

from __future__ import annotations

import math
import pickle
import pickletools
import random
import struct
from collections.abc import Callable

from fuzz_mutations import Context, mutate
from fuzz_opcodes import (
    ADDITEMS,
    ADMITTED_GLOBALS,
    APPENDS,
    BOUNDARY_INTS,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_SET,
    EMPTY_TUPLE,
    FALSE,
    FLOATS,
    FROZENSET,
    HUGE_INTS,
    MARK,
    NEWOBJ,
    NONE,
    POP,
    REDUCE,
    REFUSED_GLOBALS,
    SETITEMS,
    SMALL_INTS,
    STOP,
    STRINGS,
    TRUE,
    TUPLE,
    TUPLE1,
    TUPLE2,
    TUPLE3,
    laughs,
    op_bytes,
    op_float,
    op_get,
    op_global,
    op_int,
    op_put,
    op_str,
)

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

ITEMSIZES = {"f4": 4, "f8": 8, "<f4": 4, ">f4": 4, "i8": 8, "b1": 1, "c8": 8, "f2": 2, "u1": 1}  # numpy dtypes
BLOB_SIZES = (1, 2, 4, 8, 16)  # elements of the storage blobs the grammar builds tensors on


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
