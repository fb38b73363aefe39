"""The mirror registry family: Docker distribution's config on `mirror.host`, converged by
the files provider, started for real, and filled by the mirror provider.

The config is read back by PyYAML and by the real `docker-registry` (Debian's package): the
daemon test converges k8s-lab's mirror host into a target root with the files provider,
whose reload starts the converged config in a lo-only namespace; then the mirror provider
pushes every locked image into THAT registry from the store, and a second plan of both
providers has nothing to do.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from clirun import gen
from netns import netns
from test_images_mirror import (
    MIRROR,
    UPSTREAM,
    Site,
    _build_images,
    _point_k8s_lab_at,
    _registry_config,
    digest_of,
    gen_in,
    locked_images,
    make_ca,
    raw_manifest,
)
from test_resolve_registry import Layout

from generator.environment import load_environment
from generator.families import Pins, family_of
from generator.profiles import PROFILES

CONFIG = "hosts/test-storage1/registry/config.yml"


def _with_mirror(repo: Path, mirror: str, env: str = "k8s-lab") -> None:
    path = repo / "environments" / env / "env.yaml"
    path.write_text(path.read_text() + "\n" + mirror)


def _config(repo: Path) -> dict[str, object]:
    env = load_environment("env/k8s-lab", repo).model
    tree = family_of("registry").render(env, Pins())
    assert list(tree) == [CONFIG]
    loaded: dict[str, object] = yaml.safe_load(tree[CONFIG])
    return loaded


def test_plain_mirror_listens_on_its_port_and_stores_under_the_package_directory(
        repo: Path) -> None:
    _with_mirror(repo, 'mirror:\n  registry: "registry.k8s.test:5050"\n  host: test-storage1\n')
    config = _config(repo)
    assert config["http"] == {"addr": ":5050", "headers": {"X-Content-Type-Options": ["nosniff"]}}
    assert config["storage"] == {"filesystem": {"rootdirectory": "/var/lib/docker-registry"},
                                 "cache": {"blobdescriptor": "inmemory"},
                                 "delete": {"enabled": False}}
    assert "auth" not in config


def test_ca_and_credentials_turn_on_tls_and_htpasswd(repo: Path, tmp_path: Path) -> None:
    ca = make_ca(tmp_path)[0].read_text()
    pem = "".join(f"    {line}\n" for line in ca.strip().splitlines())
    _with_mirror(repo, 'mirror:\n  registry: "registry.k8s.test"\n  host: test-storage1\n'
                 f"  credentials: push\n  ca: |\n{pem}"
                 "secrets:\n  push: {env: GEN_SECRET_PUSH}\n")
    config = _config(repo)
    assert config["http"] == {"addr": ":443", "headers": {"X-Content-Type-Options": ["nosniff"]},
                              "tls": {"certificate": "/etc/docker/registry/tls/registry.crt",
                                      "key": "/etc/docker/registry/tls/registry.key"}}
    assert config["auth"] == {"htpasswd": {"realm": "gen-mirror",
                                           "path": "/etc/docker/registry/htpasswd"}}
    assert ca.split("\n")[1] not in json.dumps(config)  # the CA is for nodes, not the daemon


def test_no_mirror_host_renders_nothing(repo: Path) -> None:
    _with_mirror(repo, 'mirror:\n  registry: "registry.k8s.test:5050"\n')
    env = load_environment("env/k8s-lab", repo).model
    assert family_of("registry").render(env, Pins()) == {}


def test_install_rule_is_debians_package_and_el9_has_none() -> None:
    for os_name in ("debian12", "ubuntu24"):
        spec = PROFILES[os_name].service("registry")
        assert spec is not None and spec.install == "/etc/docker/registry"
        assert spec.packages == ("docker-registry",)
        assert spec.reload == ("systemctl", "restart", "docker-registry")
    assert PROFILES["el9"].service("registry") is None


def test_an_el9_mirror_host_is_refused_at_validate_with_the_fix(repo: Path) -> None:
    # lab A's helper runs el9 (blueprint openshift-upi)
    _with_mirror(repo, 'mirror:\n  registry: "registry.lab.test:5000"\n  host: helper\n', "lab")
    result = gen("validate", "env/lab", cwd=repo)
    assert result.code == 1, result.out + result.err
    line = next(x for x in result.err.splitlines() if "at mirror.host" in x)
    assert line.startswith("environments/lab/env.yaml:")
    assert "runs el9, which ships no registry package" in line
    assert "put the mirror on a Debian 12 or Ubuntu 24.04 node" in line
    assert "Traceback" not in result.err


def test_a_port_past_65535_is_refused_at_validate(repo: Path) -> None:
    _with_mirror(repo, 'mirror:\n  registry: "registry.k8s.test:70000"\n  host: test-storage1\n')
    result = gen("validate", "env/k8s-lab", cwd=repo)
    assert result.code == 1, result.out + result.err
    assert "at mirror.registry: port 70000 of mirror.registry does not exist" in result.err


@pytest.mark.daemons
def test_converged_registry_runs_and_takes_the_locked_images_from_the_store(
        tmp_path: Path, repo: Path) -> None:
    for tool in ("docker-registry", "skopeo"):
        assert shutil.which(tool), f"{tool} missing: apt-get install docker-registry skopeo"
    with netns("reg") as ns:
        log = (tmp_path / "up.log").open("wb")
        upstream = ns.popen(["docker-registry", "serve", _registry_config(
            tmp_path / "up.yml", tmp_path / "up", f"{UPSTREAM}:80")], stdout=log)
        ns.wait_port(80)
        layout = Layout(tmp_path / "layout")
        built = _build_images(layout)
        tags = {"registry": f"{UPSTREAM}/demo/single:v1", "tomcat": f"{UPSTREAM}/demo/multi:v2",
                "ingress-nginx": f"{UPSTREAM}/demo/shared:v1",
                "nfs-subdir-external-provisioner": f"{UPSTREAM}/demo/single:v1"}
        for name, ref in (("single", tags["registry"]), ("shared", tags["ingress-nginx"]),
                          ("multi", tags["tomcat"])):
            layout.tag(built[name], name)
            pushed = ns.run(["skopeo", "copy", "--dest-tls-verify=false", "--all",
                             f"oci:{layout.root}:{name}", f"docker://{ref}"])
            assert pushed.returncode == 0, pushed.stderr
        # k8s-lab from that upstream, and a plain-HTTP loopback mirror run by test-storage1
        _point_k8s_lab_at(repo, tags, make_ca(tmp_path)[0].read_text())
        env_yaml = repo / "environments/k8s-lab/env.yaml"
        text = env_yaml.read_text()
        env_yaml.write_text(text[:text.index("\nmirror:\n")]
                            + f'\nmirror:\n  registry: "{MIRROR}"\n  host: test-storage1\n')
        site = Site(ns, tmp_path, upstream, layout.root, tags)
        store = tmp_path / "store"
        for step in (("lock", "env/k8s-lab"),
                     ("fetch", "env/k8s-lab", "--all-architectures")):
            done = gen_in(site, *step, store=store, cwd=repo)
            assert done.returncode == 0, done.stdout + done.stderr

        root, data = tmp_path / "storage1", tmp_path / "registry-data"
        pidfile = tmp_path / "registry.pid"
        # The reload starts the converged config. Only the storage directory is moved (by
        # distribution's own environment override) from /var/lib/docker-registry, which
        # belongs to this machine, into the test's directory.
        # The reload returns once the registry answers, as a unit's readiness would.
        start = shlex.join(["sh", "-c", 'REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$2" '
                            'docker-registry serve "$1" >"$3" 2>&1 & echo $! >"$4"; '
                            'for i in $(seq 100); do '
                            'curl -fs -o /dev/null http://127.0.0.1:5000/v2/ && exit 0; '
                            'sleep 0.1; done; exit 1', "sh",
                            "{install}/config.yml", str(data), str(tmp_path / "mirror.log"),
                            str(pidfile)])
        files = ["--files-target", f"test-storage1={root}", "--files-exec",
                 "test-storage1=local", "--no-install-packages", f"--reload=registry={start}",
                 "--reload=haproxy=true", "--reload=nfs=true"]
        state = ["--store", str(store), "--state-dir", str(tmp_path / "state")]
        upstream.terminate()  # the site is disconnected: only the store holds the images
        upstream.wait(timeout=10)
        # One converge of a new site: the mirror cannot be looked at before the files provider
        # installs and starts the registry; converge plans again after that and pushes.
        converged = gen_in(site, "converge", "env/k8s-lab", "--provider", "files",
                           "--provider", "mirror", *files, *state, "--auto-approve",
                           store=store, cwd=repo)
        assert converged.returncode == 0, converged.stdout + converged.stderr
        assert "Not looked at: mirror:" in converged.stdout + converged.stderr
        installed = root / "etc/docker/registry/config.yml"
        assert yaml.safe_load(installed.read_text())["http"]["addr"] == ":5000"
        ns.track(int(pidfile.read_text()))
        for key, pinned in locked_images(repo).items():
            upstream_repo, digest = pinned.split("@")
            served = raw_manifest(site, f"{MIRROR}/{upstream_repo}@{digest}")
            assert digest_of(served) == digest, key
        assert (data / "docker/registry/v2/repositories").is_dir()  # the converged daemon's

        again = gen_in(site, "plan", "env/k8s-lab", "--provider", "files", "--provider",
                       "mirror", *files, *state[:2], "--detailed-exitcode", store=store,
                       cwd=repo)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "No changes" in again.stdout
        log.close()
