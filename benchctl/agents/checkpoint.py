"""Read official TD-MPC2 / BMPC checkpoint files into benchctl world models.

Three layouts exist in the wild (all `{"model": state_dict}` written by `torch.save`):
- current: the value ensemble is a tensordict, `_Qs.params.<layer>.{weight,bias,ln.weight,ln.bias}`,
  repeated under `_detach_Qs_params.` and `_target_Qs_params.`, each with `__batch_size`/`__device`;
- legacy (the released 2023 checkpoints): `_Qs.params.<n>` and `_target_Qs.params.<n>` with
  n = 4 * layer + index in [weight, bias, ln.weight, ln.bias];
- early (before the restructuring of official issue 23): Linear, LayerNorm and Mish were separate
  `Sequential` entries, e.g. `_encoder.state.1.weight` is the first Linear, `_dynamics.0.0.*`.
Each is remapped to the current names. Files are only ever read with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, cast

import torch

from benchctl.agents.base import CheckpointInfo, ModelDims
from benchctl.agents.bmpc import BMPCModel
from benchctl.agents.dreamer import PARTS, is_dreamer, load_dreamer
from benchctl.agents.dreamer import infer_dims as dreamer_dims
from benchctl.agents.dreamer_world import DreamerWorldModel
from benchctl.agents.tdmpc2 import TDMPC2Model
from benchctl.errors import BenchctlError

# Official `MODEL_SIZE` presets (millions of parameters -> trunk dims), used to name a file's size.
MODEL_SIZES: dict[int, dict[str, int]] = {
    1: {"enc_dim": 256, "mlp_dim": 384, "latent_dim": 128, "num_enc_layers": 2},
    5: {"enc_dim": 256, "mlp_dim": 512, "latent_dim": 512, "num_enc_layers": 2},
    19: {"enc_dim": 1024, "mlp_dim": 1024, "latent_dim": 768, "num_enc_layers": 3},
    48: {"enc_dim": 1792, "mlp_dim": 1792, "latent_dim": 768, "num_enc_layers": 4},
    317: {"enc_dim": 4096, "mlp_dim": 4096, "latent_dim": 1376, "num_enc_layers": 5},
}
TRUNKS = ("_encoder.state", "_dynamics", "_reward", "_pi")
_LEGACY_FIELDS = ("weight", "bias", "ln.weight", "ln.bias")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_blob(path: str | Path) -> object:
    """What a checkpoint file holds (torch.load, weights only), or a one-line BenchctlError."""
    path = Path(path)
    if not path.exists():
        raise BenchctlError(f"checkpoint {path} does not exist; pass the path of a TD-MPC2/BMPC .pt file")
    if path.is_dir():
        raise BenchctlError(
            f"{path} is a directory; pass a .pt file with --checkpoint, or the directory with --checkpoints"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign files
        if "Unsupported global" in str(exc):
            raise BenchctlError(
                f"{path} holds pickled Python objects, not just tensors; benchctl loads only weights "
                "(torch.load weights_only=True): re-save it as {'model': state_dict}"
            ) from None
        raise BenchctlError(
            f"{path} is not a PyTorch checkpoint (torch.load cannot read it); pass a TD-MPC2/BMPC .pt file"
        ) from None
    return blob


def read_state_dict(path: str | Path) -> dict:
    """The raw `model` state dict of a checkpoint file, or a BenchctlError saying what the file is."""
    return _state_dict_of(path, read_blob(path))


def _state_dict_of(path: str | Path, blob: object) -> dict:
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict) or not any(isinstance(k, str) and k.startswith("_encoder.") for k in state):
        raise BenchctlError(
            f"{path} is a PyTorch file but not a TD-MPC2/BMPC world model (no '_encoder.*' weights under 'model')"
        )
    if any(k.startswith("_task_emb") for k in state):
        raise BenchctlError(f"{path} is a multi-task TD-MPC2 checkpoint; benchctl evaluates single-task agents only")
    return state


def detect_layout(state: dict) -> str:
    if "_Qs.params.0.weight" in state:
        return "current"
    encoder = "_encoder.state.0.weight" in state or "_encoder.rgb.2.weight" in state
    if not encoder or "_dynamics.0.0.weight" in state:
        return "early"
    if "_Qs.params.0" in state:
        return "legacy"
    raise BenchctlError("unrecognised TD-MPC2 layout: no value ensemble under '_Qs.params'")


def _index_path(tail: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in tail.split("."))


def _remap_trunk(state: dict, prefix: str) -> dict:
    """Renumber one Sequential MLP whose Linear/LayerNorm were separate entries.

    Entries sorted by index: a 2-D `weight` opens a new Linear layer; a 1-D weight right after it
    is that layer's LayerNorm.
    """
    entries = sorted(
        ((_index_path(k[len(prefix) + 1 :]), k) for k in state if k.startswith(prefix + ".")),
        key=lambda item: item[0],
    )
    modules: dict[tuple, dict[str, torch.Tensor]] = {}
    for path, key in entries:
        modules.setdefault(path[:-1], {})[path[-1]] = state[key]
    out, layer = {}, -1
    for _, params in sorted(modules.items()):
        if params["weight"].dim() == 2:
            layer += 1
            out[f"{prefix}.{layer}.weight"], out[f"{prefix}.{layer}.bias"] = params["weight"], params["bias"]
        elif layer >= 0:
            out[f"{prefix}.{layer}.ln.weight"], out[f"{prefix}.{layer}.ln.bias"] = params["weight"], params["bias"]
    return out


def to_current_layout(state: dict, layout: str) -> dict:
    """The tensors benchctl needs, named as in the current official layout."""
    out = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if layout == "early":
        for prefix in TRUNKS:
            out = {k: v for k, v in out.items() if not k.startswith(prefix + ".")} | _remap_trunk(state, prefix)
    if layout in ("legacy", "early") and "_Qs.params.0" in state:
        flat = sorted((int(k.rsplit(".", 1)[1]), v) for k, v in state.items() if re.fullmatch(r"_Qs\.params\.\d+", k))
        out = {k: v for k, v in out.items() if not k.startswith("_Qs.") and not k.startswith("_target_Qs.")}
        for n, tensor in flat:
            out[f"_Qs.params.{n // 4}.{_LEGACY_FIELDS[n % 4]}"] = tensor
    return out


def infer_dims(state: dict) -> tuple[str, ModelDims]:
    """(family, dims) from tensor shapes alone."""

    def layers(prefix: str) -> list[int]:
        return sorted(
            {int(m.group(1)) for k in state for m in [re.fullmatch(rf"{re.escape(prefix)}\.(\d+)\.weight", k)] if m}
        )

    pixels = "_encoder.rgb.2.weight" in state  # the first convolution of the official pixel encoder
    try:
        q = layers("_Qs.params")
        mlp_dim, dyn_in = state["_dynamics.0.weight"].shape
        if pixels:
            channels, in_channels = state["_encoder.rgb.2.weight"].shape[:2]
            obs_shape: tuple[int, ...] = (int(in_channels), 64, 64)  # the official encoder takes 64 x 64 only
            latent_dim = int(channels) * 4 * 4  # the conv output, flattened
            obs_dim, enc, enc_dim = in_channels * 64 * 64, [], 0
        else:
            enc = layers("_encoder.state")
            obs_shape, channels = (), 0
            obs_dim = state["_encoder.state.0.weight"].shape[1]
            latent_dim = state[f"_encoder.state.{enc[-1]}.weight"].shape[0]
            enc_dim = state["_encoder.state.0.weight"].shape[0] if len(enc) > 1 else latent_dim
        action_dim = dyn_in - latent_dim
        heads, _, value_in = state["_Qs.params.0.weight"].shape
        num_bins = state[f"_reward.{layers('_reward')[-1]}.weight"].shape[0]
        pi_out = state[f"_pi.{layers('_pi')[-1]}.weight"].shape[0]
    except (KeyError, IndexError, ValueError) as exc:
        raise BenchctlError(
            f"checkpoint is missing an expected tensor ({exc}); is it a TD-MPC2/BMPC world model?"
        ) from None
    if pi_out != 2 * action_dim or not q:
        raise BenchctlError("checkpoint's policy head does not fit its dynamics' action size; the file looks damaged")
    if value_in == latent_dim:
        family = "bmpc"
    elif value_in == latent_dim + action_dim:
        family = "tdmpc2"
    else:
        raise BenchctlError(
            f"value heads take {value_in} inputs, neither Z={latent_dim} nor Z+A={latent_dim + action_dim}"
        )
    return family, ModelDims(
        obs_dim=obs_dim,
        action_dim=action_dim,
        latent_dim=latent_dim,
        enc_dim=enc_dim,
        mlp_dim=mlp_dim,
        num_enc_layers=len(enc),
        num_value_heads=heads,
        num_bins=num_bins,
        obs_shape=obs_shape,
        num_channels=int(channels),
    )


def size_label(dims: ModelDims) -> str:
    for size, preset in MODEL_SIZES.items():
        if all(getattr(dims, k) == v for k, v in preset.items()):
            return str(size)
    return "custom"


_MODULES = ("_encoder.", "_dynamics.", "_reward.", "_pi.", "_Qs.params.")
_BOUNDS = {"tdmpc2": (-10.0, 12.0), "bmpc": (-3.0, 4.0)}  # (log_std_min, log_std_dif) when a file lacks them


def _read(path: Path) -> tuple[dict, CheckpointInfo]:
    """(state dict in the current layout, or a dreamer-pytorch file's dict of state dicts; what the
    file is) without building a model."""
    blob = read_blob(path)
    if is_dreamer(blob):
        return cast(dict, blob), _dreamer_info(path, cast(dict, blob))
    raw = _state_dict_of(path, blob)
    layout = detect_layout(raw)
    state = to_current_layout(raw, layout)
    family, dims = infer_dims(state)
    _check_finite(path, state)
    lo = float(state["log_std_min"]) if "log_std_min" in state else _BOUNDS[family][0]
    dif = float(state["log_std_dif"]) if "log_std_dif" in state else _BOUNDS[family][1]
    info = CheckpointInfo(
        path=str(path),
        sha256=sha256_of(path),
        family=family,
        layout=layout,
        model_size=size_label(dims),
        dims=dims,
        num_params=sum(v.numel() for k, v in state.items() if k.startswith(_MODULES) and v.is_floating_point()),
        log_std_bounds=(lo, lo + dif),
    )
    return state, info


def _dreamer_info(path: Path, blob: dict) -> CheckpointInfo:
    d = dreamer_dims(blob)
    for part in PARTS:
        if isinstance(blob.get(part), dict):
            _check_finite(path, blob[part])
    dims = ModelDims(
        obs_dim=int(torch.Size(d.obs_shape).numel()),
        action_dim=d.action_dim,
        latent_dim=d.belief + d.state,  # planners see [belief, state]
        enc_dim=d.embedding,
        mlp_dim=d.hidden,
        num_enc_layers=3 if d.symbolic else 4,
        num_value_heads=1,
        num_bins=0,  # rewards and values are scalars
        obs_shape=() if d.symbolic else d.obs_shape,
        num_channels=0 if d.symbolic else 32,
    )
    return CheckpointInfo(
        path=str(path),
        sha256=sha256_of(path),
        family="dreamer",
        layout="dreamer-pytorch",
        model_size=f"b{d.belief} s{d.state} h{d.hidden} e{d.embedding}",  # belief, state, hidden, embedding
        dims=dims,
        num_params=sum(
            v.numel()
            for part in PARTS
            for v in blob[part].values()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
        ),
        log_std_bounds=None,
        notes=("RSSM: GRU belief and a Gaussian state; filtered on observations, the prior imagines",),
    )


def _check_finite(path: Path, state: dict) -> None:
    """NaN/inf weights would reach the simulator as actions (MuJoCo's PhysicsError): refuse them at load."""
    for key, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise BenchctlError(
                f"{path}: tensor {key} holds {bad} non-finite value(s) (NaN/inf); the weights are diverged or "
                "damaged: pass an earlier or another checkpoint"
            )


def describe_checkpoint(path: str | Path) -> CheckpointInfo:
    """Family, layout, size, dims and sha256 of a checkpoint file (what `benchctl inspect` shows)."""
    return _read(Path(path))[1]


def load_checkpoint_with_info(path: str | Path, device: str = "cpu") -> tuple[Any, CheckpointInfo]:
    """Build the world model a checkpoint describes, load its weights, freeze it."""
    path = Path(path)
    state, info = _read(path)
    if info.family == "dreamer":
        return DreamerWorldModel(load_dreamer(path, state)).freeze().to(device), info
    assert info.log_std_bounds is not None
    lo, hi = info.log_std_bounds
    if info.family == "bmpc":
        expl_lo = float(state.get("expl_log_std_min", -2))
        expl_dif = float(state.get("expl_log_std_dif", 3))
        model: TDMPC2Model = BMPCModel(info.dims, lo, hi - lo, expl_lo, expl_dif)
    else:
        model = TDMPC2Model(info.dims, lo, hi - lo)
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state and not k.startswith(("log_std", "expl_log_std"))]
    if missing:
        raise BenchctlError(
            f"{path} ({info.layout} layout) lacks {len(missing)} tensors, e.g. {missing[0]}; the file is incomplete"
        )
    for key, tensor in wanted.items():
        if key in state and state[key].shape != tensor.shape:
            raise BenchctlError(
                f"{path}: tensor {key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    model.load_state_dict({k: state[k] for k in wanted if k in state}, strict=False)
    return model.freeze().to(device), info


def load_checkpoint(path: str | Path, device: str = "cpu") -> Any:
    """The world model of an official TD-MPC2 or BMPC checkpoint or a dreamer-pytorch one, frozen,
    on `device` (TDMPC2Model, BMPCModel or DreamerWorldModel: each a WorldModel)."""
    return load_checkpoint_with_info(path, device)[0]
