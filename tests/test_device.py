"""The device helpers: device choice and the load-aware torch thread count."""

import subprocess
import sys
import time

import pytest
import torch

from faceswap.device import LoadAwareThreads, pick_device, threads_for_load
from faceswap.errors import FaceswapError


def test_threads_for_load_leaves_the_busy_cpus_alone():
    assert threads_for_load(2, 0.0) == 2
    assert threads_for_load(2, 0.3) == 2  # a little background work does not cost a thread
    assert threads_for_load(2, 1.0) == 1  # another job at full tilt on one of two cores
    assert threads_for_load(2, 5.0) == 1  # never fewer than one
    assert threads_for_load(16, 3.0) == 13


def test_load_aware_threads_sees_a_busy_process():
    before = torch.get_num_threads()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        policy = LoadAwareThreads(interval=0.0, max_threads=2)
        policy.start(probe=0.6)
        assert policy.other_load >= 0.5, policy.other_load
        assert policy.threads == 1 == torch.get_num_threads()
        # update() re-measures over the time since the last check, without sleeping itself
        time.sleep(0.3)
        assert policy.update() == 1
    finally:
        burner.kill()
        burner.wait()
        torch.set_num_threads(before)


def test_pick_device_refuses_unknown_and_missing_devices():
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(FaceswapError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FaceswapError, match="no CUDA GPU"):
            pick_device("cuda")
