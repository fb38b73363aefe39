"""gen set / node add / node remove: round-trip edits that touch only the changed lines."""

from __future__ import annotations

import difflib
from pathlib import Path

from clirun import gen

COMMENTED = """\
# A heavily commented environment: every comment, quote and indent must survive.
apiVersion: gen/v1   # the schema version
kind: Environment
blueprint: openshift-upi   # shape defaults come from here

cluster:
    # four-space mapping indent on purpose
    name: 'ocp4'          # single-quoted
    baseDomain: "example.com"   # double-quoted
    pullSecret: {env: GEN_SECRET_PULL}

networks:
-   name: lan     # dash at column 0, four-space sequence indent
    cidr: 192.168.20.0/24
    gateway: 192.168.20.1
    bridge: br0

hypervisors:
-   name: hv1
    uri: qemu:///system
    pool: {name: default, path: /var/lib/libvirt/images}

nodes:
# the helper runs DNS, DHCP, TFTP, HTTP and HAProxy
-   {name: helper, role: helper, hypervisor: hv1, nics: [{network: lan, ip: 192.168.20.111}]}
-   {name: bootstrap, role: bootstrap, hypervisor: hv1, nics: [{network: lan, ip: 192.168.20.150}]}
# control plane
-   {name: master0, role: master, hypervisor: hv1, nics: [{network: lan, ip: 192.168.20.151}]}
-   {name: master1, role: master, hypervisor: hv1, nics: [{network: lan, ip: 192.168.20.152}]}
-   {name: master2, role: master, hypervisor: hv1, nics: [{network: lan, ip: 192.168.20.153}]}
# workers
-   {name: worker0, role: worker, hypervisor: hv1, nics: [{network: lan, ip: 192.168.20.161}]}
-   name: worker1   # block style on purpose
    role: worker
    hypervisor: hv1
    memory: 8GiB    # trailing comment kept
    nics:
    -   {network: lan, ip: 192.168.20.162}
# end of nodes
"""


def _write(repo: Path) -> Path:
    path = repo / "environments" / "lab" / "env.yaml"
    path.write_text(COMMENTED)
    return path


def _changed_lines(old: str, new: str) -> list[str]:
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                  lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_set_changes_only_the_field_line(repo: Path) -> None:
    path = _write(repo)
    result = gen("set", "env/lab", "nodes[worker1].memory", "16GiB", cwd=repo)
    assert result.code == 0, result.err
    removed, added = _changed_lines(COMMENTED, path.read_text())
    assert removed == "-    memory: 8GiB    # trailing comment kept"
    # ruamel keeps the comment's column, so one space gives way to the longer value
    assert added == "+    memory: 16GiB   # trailing comment kept"


def test_set_keeps_quotes_of_other_values(repo: Path) -> None:
    path = _write(repo)
    assert gen("set", "env/lab", "cluster.name", "ocp5", cwd=repo).code == 0
    text = path.read_text()
    assert "baseDomain: \"example.com\"   # double-quoted" in text
    assert len(_changed_lines(COMMENTED, text)) == 2


def test_set_adds_a_new_key_inside_its_section(repo: Path) -> None:
    """A new key lands under the section's last key, before the blank line that ends the
    section, and a comment on that last key's own line stays on it."""
    path = _write(repo)
    assert gen("set", "env/lab", "cluster.mastersSchedulable", "false", cwd=repo).code == 0
    text = path.read_text()
    assert ('    pullSecret: {env: GEN_SECRET_PULL}\n    mastersSchedulable: false\n\nnetworks:\n'
            in text), text
    assert _changed_lines(COMMENTED, text) == ["+    mastersSchedulable: false"]
    assert gen("set", "env/lab", "cluster.bootstrapComplete", "false", cwd=repo).code == 0
    text = path.read_text()
    assert "    mastersSchedulable: false\n    bootstrapComplete: false\n\nnetworks:" in text, text


def test_node_add_appends_one_line_in_neighbour_style(repo: Path) -> None:
    path = _write(repo)
    result = gen("node", "add", "env/lab", "worker2", "--role", "worker", cwd=repo)
    assert result.code == 0, result.err
    text = path.read_text()
    changed = _changed_lines(COMMENTED, text)
    assert all(line.startswith("+") for line in changed)
    assert "name: worker2" in changed[0]
    assert "ip: 192.168.20.163" in "\n".join(changed)  # next after the highest worker's
    assert text.startswith(COMMENTED.rstrip("\n").rsplit("\n", 1)[0])  # appended at the end


def test_node_remove_deletes_only_that_node(repo: Path) -> None:
    path = _write(repo)
    assert gen("node", "remove", "env/lab", "worker0", cwd=repo).code == 0
    text = path.read_text()
    assert _changed_lines(COMMENTED, text) == [
        "--   {name: worker0, role: worker, hypervisor: hv1, nics: "
        "[{network: lan, ip: 192.168.20.161}]}"]
    assert "# workers\n-   name: worker1" in text  # the comment above it stays


def test_invalid_edit_leaves_file_untouched(repo: Path) -> None:
    path = _write(repo)
    before = path.read_bytes()
    result = gen("set", "env/lab", "nodes[worker0].nics[0].mac", "zz", cwd=repo)
    assert result.code == 1
    column = COMMENTED.splitlines()[31].index("}]}") + len(", mac: ") + 1
    assert result.err.strip() == (f"environments/lab/env.yaml:32:{column}: at "
                                  "nodes[5].nics[0].mac: 'zz' is not a MAC address (write six "
                                  "hex pairs separated by ':' such as 52:54:00:12:34:56)")
    assert path.read_bytes() == before


def test_removing_a_master_breaking_quorum_is_refused(repo: Path) -> None:
    path = _write(repo)
    before = path.read_bytes()
    result = gen("node", "remove", "env/lab", "master2", cwd=repo)
    assert result.code == 1
    assert "2 control-plane nodes cannot keep etcd quorum well" in result.err
    assert path.read_bytes() == before


def test_unknown_node_and_bad_path(repo: Path) -> None:
    _write(repo)
    result = gen("set", "env/lab", "nodes[nope].memory", "1GiB", cwd=repo)
    assert (result.code, result.err.strip()) == (
        1, "no item named 'nope' in nodes (check the name)")
    result = gen("node", "add", "env/lab", "master0", "--role", "master", cwd=repo)
    assert result.code == 1 and "already exists" in result.err


def test_yaml_syntax_error_is_one_line_at_its_position(repo: Path) -> None:
    path = _write(repo)
    path.write_text(COMMENTED.replace("    cidr: 192.168.20.0/24", "    cidr: [192.168.20.0/24"))
    result = gen("set", "env/lab", "cluster.name", "ocp5", cwd=repo)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "env.yaml:" in lines[0] and "YAML syntax error" in lines[0], lines


def test_node_add_on_a_bad_cidr_reports_it_instead_of_crashing(repo: Path) -> None:
    path = _write(repo)
    path.write_text(COMMENTED.replace("cidr: 192.168.20.0/24", "cidr: 192.168.20.1/24"))
    result = gen("node", "add", "env/lab", "worker2", "--role", "worker", cwd=repo)
    assert result.code == 1, result.err
    assert "'192.168.20.1/24' has host bits set (write 192.168.20.0/24)" in result.err


def test_node_add_on_a_huge_network_takes_the_next_address(repo: Path) -> None:
    path = _write(repo)
    text = COMMENTED.replace("cidr: 192.168.20.0/24", "cidr: 192.0.0.0/8")
    path.write_text(text)
    result = gen("node", "add", "env/lab", "worker2", "--role", "worker", cwd=repo)
    assert result.code == 0, result.err
    assert "ip: 192.168.20.163" in path.read_text()
