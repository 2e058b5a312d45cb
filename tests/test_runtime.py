"""keep_freed_memory: activation-sized tensors come from glibc's reusable heap instead of fresh mmaps."""

import platform
import subprocess
import sys

import pytest

SCRIPT = """
import torch
from benchctl.runtime import keep_freed_memory

def on_heap(numel):
    address = torch.empty(numel).data_ptr()
    for line in open("/proc/self/maps"):
        span, *_, name = line.split()
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= address < high:
            return name == "[heap]"
    return False

# glibc raises its threshold to the largest block freed so far (4 MB here): ask for a larger one after
print(on_heap(1 << 20), keep_freed_memory(), on_heap(1 << 22), on_heap(6 << 20), on_heap(16 << 20))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_activation_sized_tensors_come_from_the_heap():
    # a fresh process: glibc's default thresholds first, then benchctl's
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    before, applied, after_16mb, after_24mb, after_64mb = (s == "True" for s in out)
    assert not before  # by default a 4 MB block is a fresh mmap, page-faulted in and unmapped on free
    assert applied and after_16mb and after_24mb  # now reused heap memory
    assert not after_64mb  # beyond 32 MiB (replay buffers) memory still goes back to the kernel on free
