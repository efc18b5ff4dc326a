"""Containers: what can be checked without an engine here, and (marked `container`) a real podman build."""
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers import PY, ROOT

SHARED = Path(os.environ.get("WMS_SHARED", ROOT.parent / "shared"))  # shared/ sits beside the checkout


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile_lines():
    return [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_dockerfile_base_packages_and_command():
    lines = dockerfile_lines()
    assert lines[:2] == ["ARG BASE=python:3.12-slim", "FROM ${BASE}"]
    text = (ROOT / "Dockerfile").read_text()
    apt = re.search(r"apt-get install[^&]*", text, re.S).group(0).split()
    for package in ("git", "tesseract-ocr", "tesseract-ocr-jpn", "tesseract-ocr-jpn-vert", "tesseract-ocr-eng"):
        assert package in apt
    assert "RUN pip install -r requirements.txt" in lines
    assert lines[-1] == 'CMD ["python", "wms_worker_processor.py"]'
    assert "requirements.txt" not in (ROOT / ".dockerignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()  # secrets stay out of the image


def test_compose_file_scales_workers_and_runs_the_monitor():
    doc = compose()
    assert set(doc["services"]) == {"worker", "monitor"}
    worker, monitor = doc["services"]["worker"], doc["services"]["monitor"]
    for service in (worker, monitor):
        assert service["env_file"] == ".env" and service["image"] == "wms:latest"
        assert service["build"]["args"]["BASE"] == "${BASE:-python:3.12-slim}"
    # --scale needs no fixed name and no fixed host port
    assert "container_name" not in worker and "ports" not in worker
    assert worker["restart"] == "on-failure"  # a worker that ran out of work stays stopped
    assert monitor["command"] == ["python", "-m", "host_tools", "monitor"]
    assert monitor["volumes"] == ["monitor-data:/data"]


@pytest.mark.parametrize("service", ["worker", "monitor"])
def test_compose_commands_are_real_entry_points(service):
    command = compose()["services"][service]["command"]
    assert command[0] == "python"
    proc = subprocess.run([PY, *command[1:], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Example:" in proc.stdout


def test_image_command_is_the_documented_volunteer_command():
    cmd = dockerfile_lines()[-1]
    argv = json.loads(cmd[len("CMD "):])  # the exec (JSON-array) form
    assert argv == ["python", "wms_worker_processor.py"]
    # the same command the guide gives volunteers; in the container the URL comes from GITHUB_REPO_URL
    assert "python wms_worker_processor.py --repo-url URL" in (ROOT / "docs" / "HOST.md").read_text()


def documented_docker_run() -> str:
    """The `docker run` line of docs/HOST.md's container section, as written."""
    text = (ROOT / "docs" / "HOST.md").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.startswith("docker run ")]
    assert len(lines) == 1, lines
    return lines[0]


def test_documented_docker_run_gives_the_board_by_environment():
    argv = shlex.split(documented_docker_run())
    assert argv[:3] == ["docker", "run", "--rm"] and argv[-1] == "wms"
    assert argv[argv.index("-e") + 1].startswith("GITHUB_REPO_URL=")


@pytest.mark.container
def test_podman_build_and_run(tmp_path, daemon_board):
    setup = SHARED / "containers" / "setup-podman.sh"
    if not setup.exists() or shutil.which("bash") is None:
        pytest.fail(f"{setup} is needed to build the image here")
    base = subprocess.run(["bash", str(setup)], capture_output=True, text=True, timeout=900, check=True
                          ).stdout.strip().splitlines()[-1]
    subprocess.run(["podman", "build", "--network", "host", "--build-arg", f"BASE={base}", "-t", "wms-test", "."],
                   cwd=ROOT, check=True, timeout=1800)
    for argv in (["python", "wms_worker_processor.py", "--help"], ["python", "-m", "host_tools", "monitor", "--help"],
                 ["tesseract", "--list-langs"]):
        proc = subprocess.run(["podman", "run", "--rm", "--network", "host", "wms-test", *argv],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, shlex.join(argv) + "\n" + proc.stderr
        if argv[0] == "tesseract":
            assert {"jpn", "jpn_vert", "eng"} <= set((proc.stdout + proc.stderr).split())
    # the volunteer's route as docs/HOST.md writes it: docker is podman here, the image wms-test, the board
    # one on this machine's 127.0.0.1 (so host networking, as the guide says for such a board)
    url, bare = daemon_board
    subprocess.run([PY, "-m", "host_tools", "publish", "--repo-url", url, "--simulate", "2", "--seconds", "0"],
                   cwd=ROOT, check=True, capture_output=True, timeout=120)
    argv = shlex.split(documented_docker_run())
    argv[0], argv[-1] = "podman", "wms-test"
    argv[argv.index("-e") + 1] = f"GITHUB_REPO_URL={url}"
    argv[2:2] = ["--network", "host"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Completed work") == 2 and "No work left on the board" in proc.stdout


def _compose_cmd() -> list[str]:
    if shutil.which("podman-compose"):
        return ["podman-compose"]
    probe = subprocess.run([PY, "-c", "import podman_compose"], capture_output=True)
    if probe.returncode == 0:
        return [PY, "-m", "podman_compose"]
    pytest.fail("podman-compose is needed: pip install podman-compose")


@pytest.mark.container
def test_compose_scaled_workers_finish_the_board(tmp_path, daemon_board):
    """`compose up --scale worker=2` against a git daemon on 127.0.0.1 (host networking via an override)."""
    from tests.helpers import host, ids_by_state
    url, bare = daemon_board
    host("publish", "--repo-url", url, "--simulate", "6", "--seconds", "1", "--prefix", "c")
    image = subprocess.run(["podman", "images", "-q", "localhost/wms-test"], capture_output=True, text=True).stdout
    if not image.strip():
        pytest.fail("build the image first: pytest -m container -k podman_build")
    project = tmp_path / "compose"
    project.mkdir()
    shutil.copy(ROOT / "docker-compose.yml", project)
    (project / ".env").write_text(f"GITHUB_REPO_URL={url}\nENVIRONMENT=testing\nMAX_CONSECUTIVE_FAILURES=2\n")
    (project / "docker-compose.override.yml").write_text(
        "services:\n"
        "  worker: {image: 'localhost/wms-test:latest', network_mode: host}\n"
        "  monitor: {image: 'localhost/wms-test:latest', network_mode: host}\n")
    compose_cmd = _compose_cmd()
    try:
        subprocess.run([*compose_cmd, "up", "-d", "--no-build", "--scale", "worker=2"], cwd=project, check=True,
                       capture_output=True, timeout=300)
        from tests.helpers import wait_for
        wait_for(lambda: len(ids_by_state(bare)["completed"]) == 6, timeout=120, what="six completed orders")
    finally:
        subprocess.run([*compose_cmd, "down"], cwd=project, capture_output=True, timeout=300)
