"""The files provider on a temp root with the real checkers (named-checkconf, dhcpd, haproxy,
apache2): install, re-plan to zero, refuse a broken config while the old one keeps serving,
fill secrets on the target, publish from the store and from package paths."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from clirun import helper_on_debian
from netns import netns

from generator.errors import UserError
from generator.families import Pins
from generator.lock.store import Store
from generator.model import SecretRef
from generator.pipeline import render_environment
from generator.reconcile.files import FilesProvider, Target

ROOT = Path(__file__).resolve().parent.parent
NO_RELOAD = {s: ("true",) for s in ("dns", "dhcp", "kea", "dnsmasq", "haproxy", "http", "nfs")}


@pytest.fixture(autouse=True)
def target_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The target (this machine) holds the SSH key the Ignition files reference."""
    home = tmp_path / "home"
    (home / ".config/gen/secrets").mkdir(parents=True)
    key = target_secrets_key()
    (home / ".config/gen/secrets" / "id_rsa.pub").write_text(key + "\n")
    monkeypatch.setenv("HOME", str(home))
    return key


@pytest.fixture(scope="module")
def lab(debian_lab):  # type: ignore[no-untyped-def]
    return debian_lab


def _provider(root: Path, **kw) -> FilesProvider:
    return FilesProvider(targets={"helper": Target(str(root))}, reloads=dict(NO_RELOAD), **kw)


def _converge(provider: FilesProvider, env, tree) -> list:
    actions = provider.plan(env, provider.scope(tree))
    for action in actions:
        provider.apply(action)
    return actions


def test_install_then_zero_changes(tmp_path: Path, lab) -> None:
    env, tree = lab
    provider = _provider(tmp_path)
    first = _converge(provider, env, tree)
    assert {a.name for a in first} >= {"helper/dns", "helper/dhcp", "helper/haproxy",
                                       "helper/http", "helper/tftp", "helper/nfs"}
    assert all(a.op == "create" for a in first)
    named = tmp_path / "etc/bind/named.conf"
    assert named.read_bytes() == tree["hosts/helper/dns/named.conf"]
    assert (tmp_path / "etc/bind/zones/ocp4.example.com.zone").is_file()
    assert (tmp_path / "etc/haproxy/haproxy.cfg").read_bytes() == \
        tree["hosts/helper/haproxy/haproxy.cfg"]
    # the rendered per-node Ignition is published into the HTTP document root
    published = (tmp_path / "var/lib/gen/http/htdocs/ignition/master0.ign").read_bytes()
    assert published == tree["clusters/ocp4/ignition/master0.ign"].replace(
        b"@@gen-secret:sshAuthorizedKeys[0]@@", target_secrets_key().encode())
    # boot loaders are copied from the installed package paths on the target
    assert (tmp_path / "srv/tftp/pxelinux.0").read_bytes() == \
        Path("/usr/lib/PXELINUX/pxelinux.0").read_bytes()
    assert not (tmp_path / ".gen-staging").exists()
    again = _provider(tmp_path)
    assert again.plan(env, again.scope(tree)) == []


def test_changed_file_is_one_update_naming_the_file(tmp_path: Path, lab) -> None:
    env, tree = lab
    _converge(_provider(tmp_path), env, tree)
    changed = dict(tree)
    cfg = "hosts/helper/haproxy/haproxy.cfg"
    changed[cfg] = tree[cfg].replace(b"timeout client", b"timeout  client")
    provider = _provider(tmp_path)
    actions = provider.plan(env, provider.scope(changed))
    assert [(a.op, a.name) for a in actions] == [("update", "helper/haproxy")]
    assert [c.path for c in actions[0].changes] == ["/etc/haproxy/haproxy.cfg"]


def test_broken_haproxy_config_is_refused_and_old_one_keeps_serving(tmp_path: Path,
                                                                      lab) -> None:
    env, tree = lab
    _converge(_provider(tmp_path), env, tree)
    installed = tmp_path / "etc/haproxy/haproxy.cfg"
    good = installed.read_bytes()
    with netns("hap") as ns:
        ns.popen(["haproxy", "-db", "-f", str(installed)])
        ns.wait_port(9000)
        broken = dict(tree)
        broken["hosts/helper/haproxy/haproxy.cfg"] = good + b"\nfrontend oops\n    bind :1\n" \
            b"    no_such_keyword here\n"
        provider = _provider(tmp_path)
        (action,) = provider.plan(env, provider.scope(broken))
        with pytest.raises(UserError) as failure:
            provider.apply(action)
        assert "haproxy rejected the new /etc/haproxy files; the old ones stay in place" in \
            str(failure.value)
        assert "no_such_keyword" in str(failure.value)
        assert installed.read_bytes() == good
        assert not (tmp_path / ".gen-staging").exists()
        stats = ns.run(["curl", "-fsS", "-o", "/dev/null", "-w", "%{http_code}",
                        "http://127.0.0.1:9000/"])
        assert stats.stdout == "200", stats.stderr


def test_secret_markers_are_filled_on_the_target_only(tmp_path: Path, lab,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    env, tree = lab
    ref = SecretRef("nfsToken", "env", "GEN_SECRET_TEST_NFS_TOKEN")
    monkeypatch.setenv("GEN_SECRET_TEST_NFS_TOKEN", "s3cr3t-value")
    with_marker = dict(tree)
    exports = "hosts/helper/nfs/gen.exports"
    with_marker[exports] = tree[exports] + f"# token {ref.marker()}\n".encode()
    provider = _provider(tmp_path)
    provider_env = env.__class__(**{**{f: getattr(env, f) for f in env.__dataclass_fields__},
                                    "secrets": (ref,)})
    _converge(provider, provider_env, with_marker)
    installed = (tmp_path / "etc/exports.d/gen.exports").read_text()
    assert "# token s3cr3t-value" in installed
    again = _provider(tmp_path)
    assert again.plan(provider_env, again.scope(with_marker)) == []
    monkeypatch.delenv("GEN_SECRET_TEST_NFS_TOKEN")
    changed = dict(with_marker)
    changed[exports] += b"# more\n"
    third = _provider(tmp_path)
    (action,) = third.plan(provider_env, third.scope(changed))
    with pytest.raises(UserError, match="secret 'nfsToken' is not available on the target"):
        third.apply(action)


def test_a_rejected_config_never_echoes_a_filled_secret(tmp_path: Path, lab,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    env, tree = lab
    ref = SecretRef("statsPassword", "env", "GEN_SECRET_TEST_STATS_PASSWORD")
    monkeypatch.setenv("GEN_SECRET_TEST_STATS_PASSWORD", "pw-s3cr3t-value")
    broken = dict(tree)
    cfg = "hosts/helper/haproxy/haproxy.cfg"
    broken[cfg] = tree[cfg] + f"\nfrontend oops\n    bind {ref.marker()}:1\n".encode()
    provider_env = env.__class__(**{**{f: getattr(env, f) for f in env.__dataclass_fields__},
                                    "secrets": (ref,)})
    provider = _provider(tmp_path)
    actions = provider.plan(provider_env, provider.scope(broken))
    (haproxy,) = [a for a in actions if a.name == "helper/haproxy"]
    with pytest.raises(UserError) as failure:
        provider.apply(haproxy)
    assert "haproxy rejected" in str(failure.value)
    assert "(sensitive value)" in str(failure.value)
    assert "s3cr3t" not in str(failure.value)


def test_os_artifacts_are_published_from_the_store(tmp_path: Path, debian_repo: Path) -> None:
    store = Store(tmp_path / "store")
    kernel = b"stand-in kernel bytes"
    sha = store.put_bytes(kernel)
    # The kernel pinned as a lock would pin it; the rootfs left unpinned.
    pins = Pins(os={"rhcos-live-kernel": ("https://example.invalid/kernel", sha)})
    rendered = render_environment("env/lab", cwd=debian_repo, pins=pins)
    env, tree = rendered.loaded.model, rendered.tree
    provider = _provider(tmp_path / "root", store_root=tmp_path / "store")
    _converge(provider, env, tree)
    assert (tmp_path / "root/var/lib/gen/http/htdocs/install/rhcos-live-kernel").read_bytes() \
        == kernel
    assert (tmp_path / "root/srv/tftp/images/rhcos-live-kernel").read_bytes() == kernel
    assert any("rhcos-live-rootfs is not locked" in n for n in provider.notices)
    managed = json.loads((tmp_path / "root/srv/tftp/.gen-managed.json").read_text())
    assert managed["files"]["/srv/tftp/images/rhcos-live-kernel"] == f"store:{sha}"
    assert hashlib.sha256(kernel).hexdigest() == sha


def test_command_transport_through_a_namespace(tmp_path: Path, lab) -> None:
    """The prefix path (what ssh uses) on a real target: daemons' checkers run in a netns."""
    env, tree = lab
    with netns("files") as ns:
        target = Target(str(tmp_path), ("ip", "netns", "exec", ns.name))
        provider = FilesProvider(targets={"helper": target}, reloads=dict(NO_RELOAD))
        assert _converge(provider, env, tree)
        again = FilesProvider(targets={"helper": target}, reloads=dict(NO_RELOAD))
        assert again.plan(env, again.scope(tree)) == []


def test_reload_runs_after_swap_and_http_serves_the_new_file(tmp_path: Path, lab) -> None:
    env, tree = lab
    for parent in [tmp_path, *tmp_path.parents][:3]:
        parent.chmod(0o755)  # apache drops to www-data, which must reach the document root
    with netns("http") as ns:
        target = Target(str(tmp_path))
        root = tmp_path / "var/lib/gen/http"
        start = ("ip", "netns", "exec", ns.name, "apache2", "-d", str(root), "-f",
                 str(root / "httpd.conf"), "-k", "start")
        provider = FilesProvider(targets={"helper": target},
                                 reloads={**NO_RELOAD, "http": start})
        _converge(provider, env, tree)
        pid = int((root / "run/httpd.pid").read_text())
        ns.track(pid)
        deadline = time.time() + 10
        while True:
            result = ns.run(["curl", "-fsS", "http://127.0.0.1:8080/ignition/worker0.ign"])
            if result.returncode == 0 or time.time() > deadline:
                break
            time.sleep(0.2)
        rendered = tree["clusters/ocp4/ignition/worker0.ign"]
        assert b"@@gen-secret:" in rendered  # the render carries only the marker
        assert result.stdout.encode() == rendered.replace(
            b"@@gen-secret:sshAuthorizedKeys[0]@@", target_secrets_key().encode())


def target_secrets_key() -> str:
    return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITestKeyOnTheTarget gen-test"


def test_cli_converge_then_plan_shows_no_changes(repo: Path, tmp_path: Path) -> None:
    from clirun import gen

    helper_on_debian(repo)
    root = tmp_path / "helper-root"
    flags = ["--provider", "files", "--files-target", f"helper={root}",
             "--files-exec", "helper=local",  # reloads run here only when asked for
             "--no-install-packages",  # never apt-get on the test machine (test_profiles)
             *[f"--reload={svc}=true" for svc in NO_RELOAD if svc not in ("kea", "dnsmasq")],
             "--state-dir", str(tmp_path / "state")]
    first = gen("converge", "env/lab", "--auto-approve", *flags, cwd=repo)
    assert first.code == 0, first.err
    assert (root / "etc/dhcp/dhcpd.conf").is_file()
    plan = gen("plan", "env/lab", "--detailed-exitcode", *flags[:-2], cwd=repo)
    assert plan.code == 0, plan.out + plan.err
    assert "Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy." in plan.out \
        or "No changes" in plan.out


def test_cli_without_a_target_skips_the_host_and_says_how(repo: Path) -> None:
    from clirun import gen

    plan = gen("plan", "env/lab", "--provider", "files", cwd=repo)
    assert plan.code == 0, plan.err
    assert "helper: boot services not converged: no target given" in plan.out + plan.err


def test_files_no_longer_rendered_are_deleted_only_with_prune(tmp_path: Path, lab) -> None:
    env, tree = lab
    _converge(_provider(tmp_path), env, tree)
    gone = "hosts/helper/tftp/pxelinux.cfg/" + next(
        p.rsplit("/", 1)[1] for p in tree if "/pxelinux.cfg/" in p)
    smaller = {p: c for p, c in tree.items() if p != gone}
    installed = tmp_path / "srv/tftp" / gone.split("/tftp/", 1)[1]
    keep = _provider(tmp_path)
    assert keep.plan(env, keep.scope(smaller)) == []
    assert any("no longer rendered and are kept (run with --prune" in n for n in keep.notices)
    assert installed.is_file()
    prune = _provider(tmp_path)
    prune.prune = True
    (action,) = prune.plan(env, prune.scope(smaller))
    assert [(c.op, c.path) for c in action.changes] == [
        ("remove", "/srv/tftp/" + gone.split("/tftp/", 1)[1])]
    prune.apply(action)
    assert not installed.exists()
