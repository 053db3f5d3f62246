"""The embedded generator's weights: a safetensors file of the decoder and a JSON file beside it.

    WEIGHTS.safetensors   the decoder's tensors (mlvgm.generators.hvae.Decoder's state dict), float32
    WEIGHTS.json          {"hvae": the architecture, "training": the config it was trained with,
                           "kl_nats": KL per level on held-out images, "bits_per_dim", "train_seconds", ...}

`load_embedded()` reads the pair that ships inside the package (mlvgm/generators/weights/), offline; a path
reads another pair, e.g. one `python -m mlvgm.zoo.train` wrote. Nothing in either file is executed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mlvgm.errors import InputError
from mlvgm.generators.checks import check_finite
from mlvgm.generators.hvae import Decoder, HVAEConfig
from mlvgm.io import atomic_path, atomic_write_json, check_regular_file, field, read_json

SHIPPED = Path(__file__).parent / "weights" / "embedded.safetensors"  # python -m mlvgm.zoo.train --publish


def save_weights(decoder: Decoder, meta: dict, path: str | os.PathLike) -> None:
    """Write `decoder`'s tensors to path and `meta` to path with a .json suffix, each atomically."""
    path = Path(path)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in decoder.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "mlvgm.generators.hvae.Decoder"})
    atomic_write_json(path.with_suffix(".json"), meta)


def read_meta(path: str | os.PathLike = SHIPPED) -> dict:
    """The JSON beside a weights file, its "hvae" architecture and "temperature" checked (one InputError line)."""
    meta_path = Path(path).with_suffix(".json")
    fix = "retrain with python -m mlvgm.zoo.train"
    if not meta_path.exists():
        raise InputError(f"{meta_path} is missing: the embedded weights need their JSON config beside them "
                         "(python -m mlvgm.zoo.train writes both)")  # fmt: skip
    meta = read_json(meta_path, what="embedded-generator config", fix=fix)  # size, depth and NaN caps
    if not isinstance(meta, dict) or "hvae" not in meta:
        raise InputError(f"{meta_path} is not an embedded-generator config (no 'hvae' architecture): {fix}")
    HVAEConfig.from_dict(meta["hvae"], where=f"{meta_path}: hvae", fix=fix)
    field(meta, "temperature", float, where=str(meta_path), fix=fix, low=1e-6, high=2, default=None)
    return meta


def load_embedded(path: str | os.PathLike | None = None, *, temperature: float | None = None) -> Decoder:
    """The embedded hierarchical VAE's decoder as an MLVGM, in eval mode on the CPU.

    path:        a weights .safetensors with its .json beside it (None: the weights the package ships)
    temperature: scale of each level's prior std when sampling (None: the JSON's, else 1)

    The architecture is built on the meta device and its every tensor compared with the safetensors header
    (names, shapes, dtypes) before anything is allocated: a one-number edit to the JSON (a width of 10**5)
    is refused at the cost of the file, not of the network it describes.
    """
    path = Path(path) if path is not None else SHIPPED
    if not path.exists():
        hint = ("the package was installed without its weights: reinstall mlvgm" if path == SHIPPED
                else "give the embedded.safetensors that python -m mlvgm.zoo.train wrote")  # fmt: skip
        raise InputError(f"embedded weights {path} do not exist: {hint}")
    check_regular_file(path, what="embedded weights", fix="give the .safetensors file itself")  # a FIFO blocks
    meta = read_meta(path)
    config = HVAEConfig.from_dict(meta["hvae"])
    chosen = meta.get("temperature", 1.0) if temperature is None else temperature
    with torch.device("meta"):  # shapes only: nothing allocated until they match the file
        expected = {k: (tuple(v.shape), v.dtype) for k, v in Decoder(config).state_dict().items()}
    fix = "the pair is mismatched, retrain or reinstall"
    found = _header(path)
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path} does not fit the architecture in its JSON (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}): {fix}")  # fmt: skip
    for name in sorted(expected):
        if found[name][0] != expected[name][0]:
            raise InputError(f"{path} does not fit the architecture in its JSON: tensor {name!r} has shape "
                             f"{found[name][0]}, the JSON's architecture {expected[name][0]}: {fix}")  # fmt: skip
        if found[name][1] not in _FLOAT_DTYPES:
            raise InputError(f"{path}: tensor {name!r} is {found[name][1]}, not floating point: {fix}")
    tensors = _read(path)  # its shapes were just checked: the file's size is what this allocates
    check_finite(((k, tensors[k]) for k in sorted(tensors)), where=f"embedded weights {path}",
                 fix="retrain, or reinstall mlvgm for the shipped weights")  # fmt: skip
    decoder = Decoder(config, temperature=float(chosen))
    decoder.load_state_dict(tensors, strict=True)
    decoder.embedded_meta = meta
    return decoder.requires_grad_(False).eval().to(torch.device("cpu"))


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names


def _header(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, safetensors dtype)} from the file's header, without reading any tensor."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error types for damaged files
        raise InputError(
            f"{path} is not a readable safetensors file ({_first_line(exc)}): retrain or reinstall"
        ) from None


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- as in _header
        raise InputError(
            f"{path} is not a readable safetensors file ({_first_line(exc)}): retrain or reinstall"
        ) from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__
