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
    spec = "podman:" + os.environ["KDIAG_IMAGES_JSON"]
    # kubesim's own store resolves the debug image to podman's copy (not the JSON fallback).
    sys.path.insert(0, os.path.join(REPO, "test", "e2e", "kubesim"))
    from rt import images  # noqa: E402
    img = images.open_store(spec).get(IMAGE)
    if not img or "podmanId" not in img:
        print(f"FAIL: kubesim's store does not take {IMAGE} from podman: {img}")
        return 1
    print(f"{IMAGE}: podman image {img['podmanId'][:12]} at {img['rootfs']}")
    env = dict(os.environ, KUBESIM_IMAGES=spec)
    rc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
                        cwd=os.path.join(REPO, "test", "e2e", "cli"), env=env).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
