"""A seeded fuzzer for the checkpoint loaders: mutated and generated files, run in child processes.

This module holds the corpus, the cases, the child processes, the campaign, its summary and the command
line; its parts sit beside it: fuzz_opcodes.py (pickle opcodes written by hand, and the values the cases
draw from), fuzz_mutations.py (the mutations) and fuzz_grammar.py (the generated pickles).

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
import os
import pickle
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
from dataclasses import dataclass
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # the fuzzer's modules sit beside it (python -P omits it)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_grammar import BLOB_SIZES, Grammar, random_opstream
from fuzz_mutations import Context, mutate
from fuzz_opcodes import parse_ops

HERE = Path(__file__).resolve().parent
FUZZER_FILES = frozenset(p.name for p in HERE.glob("fuzz_*.py"))  # this module and its parts: where() skips them
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
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).name not in FUZZER_FILES]
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
