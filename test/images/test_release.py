"""The plugin as people install it: `cmake --install` and the release tarball
+ krew manifest of target `release` (scripts/release.sh), installed the way
krew installs a plugin and run through kubectl's own plugin lookup.

Krew, for a manifest: picks the platform whose selector matches the machine
(os/arch labels), downloads `uri` and checks `sha256`, unpacks it, copies each
`files` entry (`from` glob -> `to`) into ~/.krew/store/NAME/VERSION/, and links
~/.krew/bin/kubectl-NAME to `bin` there; kubectl then finds kubectl-NAME on
PATH. The test does exactly that with the local tarball (file:// uri).
"""
import glob
import hashlib
import os
import shutil
import subprocess
import tarfile

import yaml

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ["KDIAG_BUILD_DIR"]
VERSION = os.environ["KDIAG_VERSION"]
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
TARBALL = f"kubectl-diag-{VERSION}-linux-amd64.tar.gz"
BINARIES = ["kubectl-diag", "kubectl_complete-diag", "kdiag-manager", "enter", "ash"]


def sh(*cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_cmake_install_puts_every_binary_in_bin(tmp_path):
    prefix = tmp_path / "prefix"
    sh("cmake", "--install", BUILD, "--prefix", str(prefix), "--strip")
    installed = sorted(os.listdir(prefix / "bin"))
    assert installed == sorted(BINARIES)
    for b in BINARIES:
        assert os.access(prefix / "bin" / b, os.X_OK), b
    assert sh(str(prefix / "bin" / "kubectl-diag"), "version").stdout.startswith(f"kubectl-diag {VERSION}\n")
    # Only the plugin's two files in component "plugin" (what the tarball carries).
    plugin = tmp_path / "plugin"
    sh("cmake", "--install", BUILD, "--prefix", str(plugin), "--component", "plugin")
    assert sorted(os.listdir(plugin / "bin")) == ["kubectl-diag", "kubectl_complete-diag"]


def krew_install(manifest, tarball, home):
    """What `kubectl krew install --manifest M --archive A` does, step by step."""
    spec = manifest["spec"]
    name, version = manifest["metadata"]["name"], spec["version"]
    plats = [p for p in spec["platforms"]
             if p["selector"]["matchLabels"] == {"os": "linux", "arch": "amd64"}]
    assert len(plats) == 1, "exactly one platform matches linux/amd64"
    plat = plats[0]
    assert os.path.basename(plat["uri"]) == os.path.basename(tarball)
    with open(tarball, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == plat["sha256"], "sha256 mismatch"
    unpacked = home / "download"
    with tarfile.open(tarball) as t:
        t.extractall(unpacked)
    store = home / "store" / name / version
    store.mkdir(parents=True)
    for op in plat["files"]:
        matches = glob.glob(str(unpacked / op["from"]))
        assert matches, f"files: nothing matches {op['from']}"
        for m in matches:
            dest = store / op["to"]
            shutil.copy2(m, dest / os.path.basename(m) if op["to"] == "." else dest)
    bindir = home / "bin"
    bindir.mkdir()
    link = bindir / f"kubectl-{name}"
    os.symlink(store / plat["bin"], link)
    return bindir, link


def test_release_tarball_installs_the_krew_way(tmp_path):
    sh("cmake", "--build", BUILD, "--target", "release")
    out = os.path.join(BUILD, "release")
    tarball = os.path.join(out, TARBALL)
    with open(tarball + ".sha256") as f:
        want, fname = f.read().split()
    assert fname == TARBALL
    with open(tarball, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
    with open(os.path.join(out, "diag.yaml")) as f:
        manifest = yaml.safe_load(f)
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "diag"
    assert manifest["spec"]["version"] == f"v{VERSION}"
    plat = manifest["spec"]["platforms"][0]
    assert plat["uri"].endswith(f"/releases/download/v{VERSION}/{TARBALL}")
    bindir, link = krew_install(manifest, tarball, tmp_path / "krew")
    env = {"PATH": f"{bindir}:{os.path.dirname(KUBECTL)}", "HOME": str(tmp_path),
           "KUBECONFIG": str(tmp_path / "none")}
    listed = sh(KUBECTL, "plugin", "list", env=env).stdout
    assert str(link) in listed.split(), listed
    r = sh(KUBECTL, "diag", "version", env=env)
    assert r.stdout.startswith(f"kubectl-diag {VERSION}\n"), r.stdout
    # plugins/diag.yaml (the manifest of the release) is this one but for the sha256.
    def body(path):
        with open(path) as f:
            return [ln for ln in f if not ln.startswith("#") and "sha256:" not in ln]
    assert body(os.path.join(REPO, "plugins", "diag.yaml")) == body(os.path.join(out, "diag.yaml"))
    # The same target again gives the same bytes (owners, times and order fixed).
    sh("cmake", "--build", BUILD, "--target", "release")
    with open(tarball, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
