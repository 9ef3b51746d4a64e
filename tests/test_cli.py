from click.testing import CliRunner

from faceswap import __version__
from faceswap.cli import main


def test_help_lists_the_stages():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "extract" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_unknown_device_is_a_one_line_error(tmp_path):
    from faceswap.device import pick_device
    from faceswap.errors import FaceswapError
    import pytest
    import torch

    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(FaceswapError, match="no CUDA GPU"):
            pick_device("cuda")
