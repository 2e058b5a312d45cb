"""TD-MPC2 updates per second (batch 256, horizon 3) on this CPU, per model size.

Without --official the reference is the figure recorded with the official code on this 2-core machine
(torch 2.13): 2.5 updates/s at model_size 1, 1.5 at model_size 5, 12 at enc 128 / mlp 128 / latent 64.
With --official DIR (a checkout of github.com/nicklashansen/tdmpc2; needs `pip install tensordict
pyyaml`) the official update is timed in this process on the same batch, alternating with benchctl's,
so both see the same machine load. Its files are copied to a temporary directory with the device set to
CPU and capturable Adam off (the official code hard-codes cuda:0; capturable Adam has no CPU kernel).

    python benchmarks/train_speed.py [--threads 2] [--updates 20] [--rounds 3] [--official DIR]
    python benchmarks/train_speed.py --pixels [--batch 256] [--dims 128,128,512]

--pixels: a pixel agent's update (3 stacked 64x64 RGB frames, uint8, the conv encoder with its random
shift) against the state agent's of the same sizes, alternating in this process (model size 5 trunk,
latent 512 as pixel agents need; the state agent observes walker's 24 dims).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch

from benchctl.runtime import keep_freed_memory
from benchctl.train.tdmpc2 import TDMPC2Learner, new_model

RECORDED = {"size 1": 2.5, "size 5": 1.5, "128,128,64": 12.0}
MODELS = (("size 1", 1, None, 1), ("size 5", 5, None, 1), ("128,128,64", None, (128, 128, 64), 5))
OBS_DIM, ACTION_DIM = 24, 6  # walker-walk

# (file, text, replacement) applied to the official sources so they run on a CPU
CPU_PATCHES = (
    ("tdmpc2.py", "torch.device('cuda:0')", "torch.device('cpu')"),
    ("tdmpc2.py", "WorldModel(cfg).to(self.device)", "WorldModel(cfg)"),
    ("tdmpc2.py", "capturable=True", "capturable=False"),
    ("common/scale.py", "torch.device('cuda:0')", "torch.device('cpu')"),
)


def batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """obs (4, 256, obs), action (3, 256, A) in [-1, 1], reward (3, 256, 1)."""
    obs = torch.randn(4, 256, OBS_DIM, generator=generator)
    action = torch.rand(3, 256, ACTION_DIM, generator=generator) * 2 - 1
    reward = torch.rand(3, 256, 1, generator=generator)
    return obs, action, reward


def benchctl_update(size: int | None, dims) -> Callable[[], object]:
    learner = TDMPC2Learner(new_model(OBS_DIM, ACTION_DIM, size, dims), 0.99)
    g = torch.Generator().manual_seed(0)
    obs, action, reward = batch(g)
    return lambda: learner.update(obs, action, reward, g)


def pixel_or_state_update(
    pixels: bool, batch_size: int, dims: tuple[int, int, int] | None = None
) -> Callable[[], object]:
    """One update on a fixed batch of a model_size-5 agent, or of `dims` (enc, mlp, latent):
    pixels (4, B, 9, 64, 64) uint8 or state."""
    g = torch.Generator().manual_seed(0)
    shape = (9, 64, 64) if pixels else ()
    learner = TDMPC2Learner(new_model(OBS_DIM, ACTION_DIM, None if dims else 5, dims, obs_shape=shape), 0.99)
    if pixels:
        obs = torch.randint(0, 256, (4, batch_size, *shape), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn(4, batch_size, OBS_DIM, generator=g)
    action = torch.rand(3, batch_size, ACTION_DIM, generator=g) * 2 - 1
    reward = torch.rand(3, batch_size, 1, generator=g)
    learner.cfg.batch_size = batch_size
    return lambda: learner.update(obs, action, reward, g)


def load_official(checkout: Path) -> types.ModuleType:
    """Import the official `tdmpc2` module from a CPU-patched temporary copy of `checkout`."""
    src = checkout / "tdmpc2" if (checkout / "tdmpc2" / "tdmpc2.py").exists() else checkout
    if not (src / "tdmpc2.py").exists():
        sys.exit(f"--official {checkout}: no tdmpc2.py there; give a checkout of github.com/nicklashansen/tdmpc2")
    dst = Path(tempfile.mkdtemp(prefix="official-tdmpc2-"))
    shutil.copytree(src, dst, dirs_exist_ok=True)
    for name, text, replacement in CPU_PATCHES:
        path = dst / name
        code = path.read_text()
        if text not in code:
            sys.exit(f"--official {checkout}: {name} has no `{text}`; this script knows the layout of its main branch")
        path.write_text(code.replace(text, replacement))
    sys.path.insert(0, str(dst))
    import tdmpc2  # the official module, from the copy

    return tdmpc2


def official_update(module: types.ModuleType, size: int | None, dims) -> Callable[[], object]:
    import yaml
    from common import MODEL_SIZE  # the official package, next to its tdmpc2.py

    cfg = yaml.safe_load((Path(module.__file__).parent / "config.yaml").read_text())
    cfg.pop("defaults", None)
    for key, value in cfg.items():  # YAML 1.1 reads 3e-4 and +10 as strings
        if isinstance(value, str):
            try:
                cfg[key] = float(value) if any(c in value for c in ".e") else int(value)
            except ValueError:
                pass
    cfg |= MODEL_SIZE[size] if size is not None else dict(zip(("enc_dim", "mlp_dim", "latent_dim"), dims, strict=True))
    cfg |= {
        "task": "walker-walk",
        "tasks": ["walker-walk"],
        "obs": "state",
        "obs_shape": {"state": (OBS_DIM,)},
        "action_dim": ACTION_DIM,
        "episode_length": 1000,
        "multitask": False,
        "episodic": False,
        "task_dim": 0,
        "compile": False,
        "bin_size": (cfg["vmax"] - cfg["vmin"]) / (cfg["num_bins"] - 1),
    }
    namespace = types.SimpleNamespace(**cfg)
    namespace.get = lambda key, default=None: getattr(namespace, key, default)
    agent = module.TDMPC2(namespace)
    obs, action, reward = batch(torch.Generator().manual_seed(0))
    terminated = torch.zeros_like(reward)
    return lambda: agent._update(obs, action, reward, terminated)


def rate(update: Callable[[], object], n: int) -> float:
    for _ in range(2):  # warm-up
        update()
    start = time.perf_counter()
    for _ in range(n):
        update()
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=20, help="timed updates per round (x5 at 128,128,64)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is printed")
    parser.add_argument("--official", type=Path, help="checkout of the official TD-MPC2 code to time alongside")
    parser.add_argument("--pixels", action="store_true", help="pixel agent against state agent, model size 5")
    parser.add_argument("--batch", type=int, default=256, help="--pixels: minibatch")
    parser.add_argument("--dims", help="--pixels: enc,mlp,latent instead of model size 5 (latent 512 for pixels)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the benchctl command does
    if args.pixels:
        dims = tuple(int(d) for d in args.dims.split(",")) if args.dims else None
        model = f"dims {args.dims}" if dims else "model size 5 (latent 512)"
        print(f"{model}, batch {args.batch}, horizon 3, {args.threads} threads: updates/s")
        updates = {kind: pixel_or_state_update(kind == "pixels", args.batch, dims) for kind in ("pixels", "state")}
        rates: dict[str, list[float]] = {kind: [] for kind in updates}
        for _ in range(args.rounds):
            for kind, update in updates.items():
                rates[kind].append(rate(update, max(2, args.updates // (10 if kind == "pixels" else 1))))
        pix, state = statistics.median(rates["pixels"]), statistics.median(rates["state"])
        print(f"pixels {pix:.2f}, state {state:.2f}: pixels train {state / pix:.1f}x slower per update")
        return
    official = load_official(args.official) if args.official else None
    reference = "official, this process" if official else "official, recorded"
    print(f"walker-sized agent (obs 24, action 6), batch 256, horizon 3, {args.threads} threads")
    print(f"{'model':<12}{'benchctl':>10}{reference:>24}{'ratio':>8}")
    for label, size, dims, scale in MODELS:
        n = scale * args.updates
        ours = benchctl_update(size, dims)
        theirs = official_update(official, size, dims) if official else None
        ours_rates, their_rates = [], []
        for _ in range(args.rounds):
            ours_rates.append(rate(ours, n))
            if theirs is not None:
                their_rates.append(rate(theirs, n))
        mine = statistics.median(ours_rates)
        ref = statistics.median(their_rates) if theirs is not None else RECORDED[label]
        print(f"{label:<12}{mine:>10.2f}{ref:>24.2f}{mine / ref:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
