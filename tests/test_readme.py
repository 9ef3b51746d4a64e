"""The README's two set-up commands are the ones CI runs and the ones that work."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text):
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = _bash_blocks(setup)
    assert len(blocks) == 2, "the README's set-up section holds exactly two commands: run and test"
    run, test = blocks
    assert "pytest" in test and test in ci
    assert "pip install" in run and "faceswap" in run.split("&&")[-1]


def test_readme_run_command_inputs_exist():
    readme = (ROOT / "README.md").read_text()
    run = _bash_blocks(readme.split("## Set up", 1)[1])[0]
    for path in re.findall(r"samples/\S+", run):
        assert (ROOT / path).exists(), f"{path} named in the README does not exist"
