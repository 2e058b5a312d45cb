"""DeepMind Control from pixels, rendered as the agent family's official code renders it.

`tdmpc2` (the official TD-MPC2 pixel wrapper, spec/suites.md): each policy step, the action
repeated twice (rewards summed, as the state suite), then one 64x64 RGB render (camera 2 for
quadruped, 0 otherwise); the observation stacks the last 3 frames, oldest first, as uint8
(9, 64, 64). A reset renders once and repeats that frame 3 times.

`dreamer` (dreamer-pytorch's ControlSuiteEnv): one frame, rendered at dm_control's default 240x320
from camera 0 and resized to 64x64 bilinearly (cv2.INTER_LINEAR's half-pixel rule, no antialiasing),
uint8 (3, 64, 64); the agent quantizes it to 5 bits itself.

Render time is kept apart (`render_seconds`): planning latency never includes it.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from benchctl.envs.base import StepResult
from benchctl.envs.render import choose_gl


class PixelDMCEnv:
    def __init__(
        self,
        domain: str,
        task: str,
        episode_length: int = 500,
        action_repeat: int = 2,
        seed: int = 0,
        frames: int = 3,
        size: int = 64,
        protocol: str = "tdmpc2",  # "tdmpc2" or "dreamer" (agents.pixel_protocol)
    ):
        self.gl = choose_gl()  # before dm_control's renderer is imported
        from benchctl.envs.dmc import DMCEnv

        self._state = DMCEnv(domain, task, episode_length, action_repeat, seed)
        self._physics = self._state.physics
        if protocol not in ("tdmpc2", "dreamer"):
            raise ValueError(f"pixel protocol {protocol!r}: tdmpc2 or dreamer")
        self.protocol = protocol
        if protocol == "dreamer":
            frames, self._camera = 1, 0
        else:
            self._camera = 2 if domain == "quadruped" else 0
        self._size = size
        self._frames: deque[np.ndarray] = deque(maxlen=frames)
        self.obs_shape = (3 * frames, size, size)
        self.obs_dim = int(np.prod(self.obs_shape))
        self.action_dim = self._state.action_dim
        self.episode_length = episode_length
        self.action_repeat = action_repeat
        self.render_seconds = 0.0  # total time spent rendering since construction

    def _render(self) -> np.ndarray:
        start = time.perf_counter()
        if self.protocol == "dreamer":
            frame = resize_bilinear(self._physics.render(camera_id=self._camera), self._size)
        else:
            frame = self._physics.render(self._size, self._size, camera_id=self._camera)
        self.render_seconds += time.perf_counter() - start
        return np.ascontiguousarray(frame.transpose(2, 0, 1))  # (3, size, size) uint8

    def _observation(self) -> np.ndarray:
        return np.concatenate(list(self._frames))  # (3 frames, size, size), oldest first

    def reset(self, seed: int) -> np.ndarray:
        self._state.reset(seed)
        frame = self._render()
        for _ in range(self._frames.maxlen or 1):
            self._frames.append(frame)
        return self._observation()

    def step(self, action: np.ndarray) -> StepResult:
        result = self._state.step(action)
        self._frames.append(self._render())
        return StepResult(self._observation(), result.reward, result.done)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8, bilinear with half-pixel centres and no antialiasing
    (the rule of cv2.resize INTER_LINEAR, which dreamer-pytorch uses), rounded to the nearest level."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float()
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
