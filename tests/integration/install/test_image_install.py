"""The container image's install steps, run outside Docker (image builds cannot run here).

The Dockerfile's builder stage runs hack/install_image.sh on the files it copies; this test
copies the same files into a fresh directory, runs the same script into a fresh virtual
environment, and checks that the installed command works and carries no build tools.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from install_support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", "_generated")


def copied_sources() -> list[str]:
    """The sources the builder stage COPYs from the build context, read from the Dockerfile."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"^COPY (?!--from)(.+) \S+$", line)
        if match:
            sources += match.group(1).split()
    return sources


def test_dockerfile_copies_what_the_install_script_needs() -> None:
    assert copied_sources() == [
        "pyproject.toml",
        "README.md",
        "hack/install_image.sh",
        "hack/generate_csi_stubs.py",
        "hack/generate_freeze_stubs.py",
        "hack/build_binaries.py",
        "hack/versions.env",
        "operator",
    ]
    text = DOCKERFILE.read_text()
    assert "RUN sh hack/install_image.sh /src /opt/venv" in text
    assert "USER 10001:10001" in text
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert "COPY --from=builder /opt/venv /opt/venv" in final_stage
    assert "/usr/local/go" not in final_stage  # no toolchain in the final image


def test_install_steps_give_a_working_command(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in copied_sources():
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=IGNORED)
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, src / name)
    prefix = tmp_path / "venv"
    result = subprocess.run(
        ["sh", str(src / "hack" / "install_image.sh"), str(src), str(prefix)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
        env={
            "PATH": f"{Path(sys.executable).parent}:/usr/local/go/bin:/usr/bin:/bin",
            "HOME": str(Path.home()),
        },
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert (src / "operator" / "elasticsan_snapshotter" / "csi" / "_generated" / "csi_pb2.py").exists()
    assert (src / "operator" / "elasticsan_snapshotter" / "freeze" / "_generated" / "freeze_pb2.py").exists()

    helped = subprocess.run(
        [str(prefix / "bin" / "elasticsan-snapshotter"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    listed = set(re.findall(r"^\s{4}(\S+)", helped.stdout, re.MULTILINE))
    assert {"operator", "emulator", "csi-controller", "freeze-agent"} <= listed, helped.stdout
    assert "demo" not in listed, helped.stdout
    # What ships is what runs in production: no local control plane, no demo.
    [package] = prefix.glob("lib/python*/site-packages/elasticsan_snapshotter")
    assert (package / "emulator" / "server.py").is_file()
    assert (package / "csi" / "_generated" / "csi_pb2.py").is_file()
    assert (package / "freeze" / "_generated" / "freeze_pb2.py").is_file()
    assert not (package / "local_cluster").exists()
    assert not (package / "demo").exists()
    operator_help = subprocess.run(
        [str(prefix / "bin" / "elasticsan-snapshotter"), "operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--managed-sans" in operator_help.stdout
    # The freeze package checks its stubs against the freeze.proto shipped beside it.
    stubs = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "import elasticsan_snapshotter.freeze._stubs"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stubs.returncode == 0, stubs.stderr
    # The runtime environment holds no build or test tools.
    installed = subprocess.run(
        [str(prefix / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.lower()
    for tool in ("grpcio-tools", "pytest", "mypy", "ruff"):
        assert f"{tool}==" not in installed
