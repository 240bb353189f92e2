"""The CLI e2e scenarios on the debug image podman built (scripts/image.sh): kubesim runs with
--images podman:<images.json>, so the debug image comes from `podman image mount` and only the
demo images (nginx, curl, distroless) from the CMake store. 77 (skipped) when podman lacks the
image (no podman here, or image_oci did not build it)."""
import os
import subprocess
import sys

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
IMAGE = os.environ["KDIAG_DEFAULT_IMAGE"]
SUITES = ["test_cli_basic.py", "test_cli_redir.py", "test_cli_logs.py"]


def main():
    try:
        have = subprocess.run(["podman", "image", "exists", IMAGE]).returncode == 0
    except OSError:
        have = False
    if not have:
        print(f"SKIP: podman's store has no {IMAGE} (scripts/image.sh builds it; ctest image_oci runs it)")
        return 77
    env = dict(os.environ, KUBESIM_IMAGES="podman:" + os.environ["KDIAG_IMAGES_JSON"])
    rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
                        cwd=os.path.join(REPO, "test", "e2e", "cli"), env=env).returncode
    if rc:
        return rc
    # The debug image really came from podman: kubesim mounted it.
    mounted = subprocess.run(["podman", "image", "mount"], capture_output=True, text=True).stdout
    if IMAGE not in mounted:
        print(f"FAIL: kubesim did not mount {IMAGE} from podman's store:\n{mounted}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
