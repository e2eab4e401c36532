"""The README's two commands exist, are what CI calls, and do what the README says."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_names_the_two_commands_and_ci_calls_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/run.sh" in readme and "bash scripts/test.sh" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^bash scripts/test\.sh", ci, re.M)
    assert re.search(r"^bash scripts/run\.sh", ci, re.M)
    for script in ("run.sh", "test.sh", "install.sh", "install_tsne.sh"):
        path = ROOT / "scripts" / script
        assert path.is_file()
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0  # valid shell


def test_scripts_install_then_run_the_real_tools():
    run = (ROOT / "scripts" / "run.sh").read_text()
    test = (ROOT / "scripts" / "test.sh").read_text()
    assert "bash scripts/install.sh" in run and "kdal-run" in run
    assert "bash scripts/install.sh" in test and "pytest" in test
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert "torch==2.14.1" in install and "torchvision==0.29.1" in install


def test_pyproject_pins_torch_and_environment_uses_conda_forge_only():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.14.1"' in pyproject and '"torchvision==0.29.1"' in pyproject
    assert 'kdal-run = "kdal_lib.runner:main"' in pyproject
    env = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in env and "pytorch\n" not in env.split("dependencies")[0]
    assert "-e .[notebooks,test]" in env


def test_installed_console_script_answers_help():
    exe = Path(sys.executable).with_name("kdal-run")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--preset" in out.stdout
