"""The embedded generator's weights: a safetensors file of the decoder and a JSON file beside it.

    WEIGHTS.safetensors   the decoder's tensors (mlvgm.generators.hvae.Decoder's state dict), float32
    WEIGHTS.json          {"hvae": the architecture, "training": the config it was trained with,
                           "kl_nats": KL per level on held-out images, "bits_per_dim", "train_seconds", ...}

`load_embedded()` reads the pair that ships inside the package (mlvgm/generators/weights/), offline; a path
reads another pair, e.g. one `python -m mlvgm.zoo.train` wrote. Nothing in either file is executed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mlvgm.errors import InputError
from mlvgm.generators.hvae import Decoder, HVAEConfig
from mlvgm.io import atomic_path, atomic_write_json

SHIPPED = Path(__file__).parent / "weights" / "embedded.safetensors"  # python -m mlvgm.zoo.train --publish


def save_weights(decoder: Decoder, meta: dict, path: str | os.PathLike) -> None:
    """Write `decoder`'s tensors to path and `meta` to path with a .json suffix, each atomically."""
    path = Path(path)
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in decoder.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "mlvgm.generators.hvae.Decoder"})
    atomic_write_json(path.with_suffix(".json"), meta)


def read_meta(path: str | os.PathLike = SHIPPED) -> dict:
    """The JSON beside a weights file."""
    meta_path = Path(path).with_suffix(".json")
    if not meta_path.is_file():
        raise InputError(f"{meta_path} is missing: the embedded weights need their JSON config beside them "
                         "(python -m mlvgm.zoo.train writes both)")  # fmt: skip
    try:
        meta = json.loads(meta_path.read_text())
        HVAEConfig.from_dict(meta["hvae"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{meta_path} is not an embedded-generator config ({type(exc).__name__}: {exc}): "
                         "retrain with python -m mlvgm.zoo.train") from None  # fmt: skip
    return meta


def load_embedded(path: str | os.PathLike | None = None, *, temperature: float | None = None) -> Decoder:
    """The embedded hierarchical VAE's decoder as an MLVGM, in eval mode on the CPU.

    path:        a weights .safetensors with its .json beside it (None: the weights the package ships)
    temperature: scale of each level's prior std when sampling (None: the JSON's, else 1)
    """
    path = Path(path) if path is not None else SHIPPED
    if not path.is_file():
        hint = ("the package was installed without its weights: reinstall mlvgm" if path == SHIPPED
                else "give the embedded.safetensors that python -m mlvgm.zoo.train wrote")  # fmt: skip
        raise InputError(f"embedded weights {path} do not exist: {hint}")
    meta = read_meta(path)
    config = HVAEConfig.from_dict(meta["hvae"])
    decoder = Decoder(config, temperature=float(meta.get("temperature", 1.0) if temperature is None else temperature))
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error types for damaged files
        raise InputError(f"{path} is not a readable safetensors file ({exc}): retrain or reinstall") from None
    try:
        missing, unexpected = decoder.load_state_dict(tensors, strict=False)
    except RuntimeError as exc:  # a tensor of another shape
        first = str(exc).split("\n\t")[1] if "\n\t" in str(exc) else str(exc)
        missing, unexpected = [first.strip()], []
    if missing or unexpected:
        raise InputError(f"{path} does not fit the architecture in its JSON (missing or mismatched {missing[:3]}, "
                         f"unexpected {unexpected[:3]}): the pair is mismatched, retrain or reinstall")  # fmt: skip
    decoder.embedded_meta = meta
    return decoder.requires_grad_(False).eval().to(torch.device("cpu"))
