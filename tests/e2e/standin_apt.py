"""A stand-in for pkgs.k8s.io: a signed flat apt repository of stand-in Kubernetes packages.

The user-data gen renders for a kubeadm node fetches `<repo>Release.key`, dearmors it into
the keyring its `signed-by=` names, adds `deb [signed-by=...] <repo> /` and installs the
pinned `kubelet=<v>-1.1 kubeadm=<v>-1.1 kubectl=<v>-1.1`. The VM cannot reach pkgs.k8s.io,
so the test builds the same layout locally: packages of those names and versions built with
`dpkg-deb --build` (each a script that prints its version; kubelet also a systemd unit that
stays active), indexed by `apt-ftparchive`, `Release` signed by a throw-away GnuPG key
(InRelease and Release.gpg) whose public half is `Release.key`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

KUBELET_UNIT = """\
[Unit]
Description=kubelet (gen test stand-in)

[Service]
ExecStart=/usr/bin/kubelet
Restart=always

[Install]
WantedBy=multi-user.target
"""


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed: {proc.stdout}{proc.stderr}")
    return proc  # type: ignore[no-any-return]


def build_deb(out: Path, name: str, version: str) -> Path:
    """A stand-in package: /usr/bin/<name> prints `<name> v<upstream> (gen stand-in)`;
    kubelet without arguments sleeps, as a service."""
    upstream = version.split("-", 1)[0]
    root = out / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    # kubelet without arguments is the service: it stays up.
    serve = '[ $# -eq 0 ] && exec sleep infinity\n' if name == "kubelet" else ""
    script = root / "usr/bin" / name
    script.write_text(f"#!/bin/sh\n{serve}echo '{name} v{upstream} (gen stand-in)'\n")
    script.chmod(0o755)
    if name == "kubelet":
        (root / "lib/systemd/system").mkdir(parents=True)
        (root / "lib/systemd/system/kubelet.service").write_text(KUBELET_UNIT)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n"
        "Maintainer: gen tests <tests@gen.invalid>\n"
        f"Description: {name} stand-in for gen's cloud-init end-to-end test\n")
    deb = out / f"{name}_{version}_amd64.deb"
    _run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)])
    return deb


def build_repo(repo: Path, packages: dict[str, str], gnupg: Path) -> None:
    """A flat repository at `repo` (`deb <url> /`) holding `packages` (name -> version)."""
    repo.mkdir(parents=True, exist_ok=True)
    work = repo.parent / (repo.name + ".work")
    work.mkdir()
    for name, version in packages.items():
        build_deb(work, name, version).rename(repo / f"{name}_{version}_amd64.deb")
    (repo / "Packages").write_text(_run(["apt-ftparchive", "packages", "."], cwd=repo).stdout)
    _run(["gzip", "-kn9", "Packages"], cwd=repo)
    release = _run(["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=gen-standin",
                    "release", "."], cwd=repo).stdout
    (repo / "Release").write_text(release)
    gnupg.mkdir(mode=0o700, exist_ok=True)
    gpg = ["gpg", "--homedir", str(gnupg), "--batch", "--yes"]
    try:
        _run([*gpg, "--passphrase", "", "--quick-gen-key", "gen stand-in pkgs.k8s.io",
              "rsa2048", "sign", "never"])
        _run([*gpg, "--clearsign", "-o", str(repo / "InRelease"), str(repo / "Release")])
        _run([*gpg, "-abs", "-o", str(repo / "Release.gpg"), str(repo / "Release")])
        _run([*gpg, "--armor", "--export", "-o", str(repo / "Release.key")])
    finally:  # gpg started an agent for this home directory: stop it
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"],
                       capture_output=True, check=False)
