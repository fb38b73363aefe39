"""The Ignition proof fails, naming the node and the step, when the rendered tree is broken.

The end-to-end boot test (test_boot.py) proves that real Ignition inside each booted VM
applies what gen rendered. This test proves that proof can fail, without booting a VM: it
runs the very steps the stand-in OS runs (standin_os.APPLY_IGNITION: Debian's real Ignition
2.14, fetch and files stages on the metal platform, a tmpfs sysroot, then the `landed`
report) on the host, in a private mount namespace inside a lo-only network namespace where
the helper's address (192.168.20.111:8080) serves gen's rendered per-node configs and
stand-in role configs, and checks the report with the same code as test_boot.py
(ignition_proof.problems):
- the rendered configs, untouched but for the secret marker filled as converge fills it,
  land as the environment says for bootstrap, master0 and worker0;
- master0 with its merge URL pointing to a role config that is not there fails at step
  `ignition-fetch`;
- worker0 with a keyfile whose gateway is not the network's fails at step `keyfile`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from ignition_proof import SSH_KEY, Expected, expected, problems, role_config
from lab import lab_boot_env
from netns import Netns, netns
from standin_os import APPLY_IGNITION, IGNITION, SETFILES, SYSROOT

pytestmark = pytest.mark.daemons
ROOT = Path(__file__).resolve().parents[2]
HELPER = "192.168.20.111"
NODES = {"bootstrap": ("bootstrap", "192.168.20.150"), "master0": ("master", "192.168.20.151"),
         "worker0": ("worker", "192.168.20.161")}
MARKER = "@@gen-secret:sshAuthorizedKeys[0]@@"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lab-boot rendered (gen render, the environment test_boot uses)."""
    assert IGNITION.is_file(), "Debian's ignition missing (tests/run.sh APT_PACKAGES)"
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "blueprints", repo / "blueprints",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "environments" / "lab-boot").mkdir(parents=True)
    (repo / "environments/lab-boot/env.yaml").write_text(lab_boot_env("http://127.0.0.1:9"))
    proc = subprocess.run([sys.executable, "-m", "generator", "render",
                           "environments/lab-boot", "--out", "out"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return repo / "out"


@pytest.fixture(scope="module")
def helper(rendered: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    """A lo-only namespace whose `lo` holds the helper's address, serving its document root."""
    docroot = tmp_path_factory.mktemp("htdocs")
    (docroot / "ignition/roles").mkdir(parents=True)
    for node in NODES:  # as converge publishes it: the marker filled with the key
        text = (rendered / f"clusters/ocp4/ignition/{node}.ign").read_text()
        assert MARKER in text
        (docroot / f"ignition/{node}.ign").write_text(text.replace(MARKER, SSH_KEY))
    for role in ("bootstrap", "master", "worker"):
        (docroot / f"ignition/roles/{role}.ign").write_text(json.dumps(role_config(role)))
    with netns("ign") as ns:
        ns.run(["ip", "addr", "add", f"{HELPER}/32", "dev", "lo"], check=True)
        ns.popen([sys.executable, "-m", "http.server", "--bind", HELPER, "--directory",
                  str(docroot), "8080"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ns.wait_port(8080)
        yield ns, docroot


def apply(ns: Netns, tmp: Path, node: str) -> str:
    """The stand-in's apply_ignition for `node`'s config URL; its GEN-STANDIN lines."""
    skeleton = tmp / "skeleton"
    for at, text in SYSROOT.items():
        path = skeleton / Path(at).relative_to("lib/gen-sysroot")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp / "bin").mkdir(parents=True, exist_ok=True)
    (tmp / "bin/setfiles").write_text(SETFILES.replace("/bin/busybox sh", "/bin/sh"))
    (tmp / "bin/setfiles").chmod(0o755)
    script = ('say() { echo "GEN-STANDIN: $*"; }\n' + APPLY_IGNITION
              + f"\napply_ignition http://{HELPER}:8080/ignition/{node}.ign\n")
    # The tmpfs sysroot goes over /mnt, in this private mount namespace only: Ignition
    # writes core's SSH key as core, who cannot pass pytest's 0700 tmp directory.
    env = {**os.environ, "SYSROOT": "/mnt", "RUN": str(tmp / "run"),
           "SKELETON": str(skeleton), "IGNITION": str(IGNITION),
           "PATH": f"{tmp / 'bin'}:/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = ns.run(["unshare", "-m", "--propagation", "private", "busybox", "sh", "-c", script],
                  env=env, capture_output=True, text=True, timeout=180)
    return proc.stdout + proc.stderr



def test_rendered_configs_land(helper: tuple[Netns, Path], rendered: Path,
                               tmp_path: Path) -> None:
    ns, _ = helper
    for node in NODES:
        console = apply(ns, tmp_path / node, node)
        assert problems(console, want(rendered, node)) == [], console


def test_wrong_merge_url_fails_at_fetch(helper: tuple[Netns, Path], rendered: Path,
                                        tmp_path: Path) -> None:
    ns, docroot = helper
    config = json.loads((docroot / "ignition/master0.ign").read_text())
    config["ignition"]["config"]["merge"][0]["source"] = \
        f"http://{HELPER}:8080/ignition/roles/no-such-role.ign"
    (docroot / "ignition/broken-merge.ign").write_text(json.dumps(config))
    console = apply(ns, tmp_path, "broken-merge")
    found = problems(console, want(rendered, "master0"))
    assert len(found) == 1 and found[0].startswith("master0: step ignition-fetch: failed "), \
        (found, console)
    assert "no-such-role.ign" in found[0] or "404" in found[0] or "not found" in found[0], found


def test_bad_gateway_fails_at_keyfile(helper: tuple[Netns, Path], rendered: Path,
                                      tmp_path: Path) -> None:
    ns, docroot = helper
    config = json.loads((docroot / "ignition/worker0.ign").read_text())
    keyfile = next(f for f in config["storage"]["files"] if f["path"].endswith(".nmconnection"))
    text = unquote(keyfile["contents"]["source"].removeprefix("data:,"))
    assert "gateway=192.168.20.1\n" in text
    keyfile["contents"]["source"] = "data:," + quote(
        text.replace("gateway=192.168.20.1\n", "gateway=192.168.21.1\n"), safe="")
    (docroot / "ignition/broken-gateway.ign").write_text(json.dumps(config))
    console = apply(ns, tmp_path, "broken-gateway")
    found = problems(console, want(rendered, "worker0"))
    assert found == ["worker0: step keyfile: ens3.nmconnection: gateway '192.168.21.1', "
                     "not '192.168.20.1'"], (found, console)


def want(rendered: Path, node: str) -> Expected:
    return expected(rendered, node, *NODES[node])
