"""DistributedDataParallel: two CPU processes (gloo) launched by torchrun stay in lock-step."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cv2
import torch
from safetensors.torch import load_file

from faceswap.synthetic import IDENTITY_A, IDENTITY_B, face_batch


def test_two_ranks_hold_identical_weights(tmp_path):
    for name, ident in (("a", IDENTITY_A), ("b", IDENTITY_B)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(face_batch(ident, 12, 32, seed=4).permute(0, 2, 3, 1).numpy()):
            cv2.imwrite(str(tmp_path / name / f"{i:02d}.png"), img[..., ::-1])
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import os
        from safetensors.torch import save_file
        from faceswap.model.autoencoder import PRESETS, Preset
        PRESETS["tiny"] = Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3, lr=1e-3)
        from faceswap.train import TrainConfig, train
        r = train(TrainConfig({str(tmp_path / "a")!r}, {str(tmp_path / "b")!r}, {str(tmp_path / "m")!r}, preset="tiny",
                              batch_size=4, iterations=5, save_every=2, log_every=1, quiet=True, threads=1, device="cpu"))
        assert r.iteration == 5
        save_file({{k: v.contiguous() for k, v in r.model.state_dict().items()}}, {str(tmp_path)!r} + f"/rank{{os.environ['RANK']}}.safetensors")
    """))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    ckpt = load_file(str(tmp_path / "m" / "model.safetensors"))
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
        assert torch.equal(r0[k], ckpt[k]), k  # rank 0 saved what both ranks hold
    # Each rank drew its own batches (different RNG streams), both saved for an exact resume.
    assert not torch.equal(ckpt["train/rng/0"], ckpt["train/rng/1"])
    # ...and the weights moved away from the shared initialisation (seed 0).
    from faceswap.model.autoencoder import Preset, SwapModel

    torch.manual_seed(0)
    init = SwapModel(Preset("tiny", 32, enc=(8, 16, 32), enc_kernel=3, dense=32, latent=32, dec=(16, 8), out_kernel=3)).state_dict()
    assert not torch.equal(r0["encoder.dense1.weight"], init["encoder.dense1.weight"])
