"""Every rendered libvirt XML is accepted by real libvirt.

Two independent checks on each file of `hypervisors/<hv>/{networks,pools,volumes,domains}`:
libvirt's own RelaxNG schemas (`virt-xml-validate`, from libvirt-clients), and defining the
objects on libvirt's `test://` driver from a private state file: networks defined and
started, the pool defined and started, each volume created in it, each domain defined with
VIR_DOMAIN_DEFINE_VALIDATE and started. Tools missing is a failure, not a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from generator.families import libvirt
from generator.families.libvirt import GEN_NS
from generator.model import Node
from generator.pipeline import render_environment
from generator.tree import Tree

ROOT = Path(__file__).resolve().parent.parent
KINDS = {"networks": "network", "pools": "storagepool", "volumes": "storagevol",
         "domains": "domain"}
PATH = re.compile(r"^hypervisors/([^/]+)/([^/]+)/[^/]+\.xml$")


def libvirt_files(tree: Tree) -> dict[str, dict[str, dict[str, bytes]]]:
    """hypervisor -> kind directory -> path -> XML, for the libvirt family's output."""
    result: dict[str, dict[str, dict[str, bytes]]] = {}
    for path, content in tree.items():
        match = PATH.match(path)
        if match and match.group(2) in KINDS:
            result.setdefault(match.group(1), {}).setdefault(match.group(2), {})[path] = content
    return result


def render(env: str, root: Path = ROOT) -> Tree:
    return render_environment(f"env/{env}", cwd=root).tree


def validate_with_rng(tmp_path: Path, tree: Tree) -> int:
    """Run virt-xml-validate on every libvirt file, with the schema named explicitly."""
    tool = shutil.which("virt-xml-validate")
    assert tool, "virt-xml-validate missing: apt-get install libvirt-clients libxml2-utils"
    count = 0
    for kinds in libvirt_files(tree).values():
        for kind, files in kinds.items():
            for path, content in files.items():
                file = tmp_path / "rng" / path
                file.parent.mkdir(parents=True, exist_ok=True)
                file.write_bytes(content)
                result = subprocess.run([tool, str(file), KINDS[kind]], capture_output=True,
                                        text=True, check=False)
                assert result.returncode == 0, f"{path} rejected by libvirt's schema:\n" + (
                    result.stdout + result.stderr)
                count += 1
    return count


def define_on_test_driver(tmp_path: Path, tree: Tree) -> dict[str, str]:
    """Define and start everything per hypervisor; returns domain name -> live XML."""
    libvirt = _import_libvirt()
    live: dict[str, str] = {}
    for hv, kinds in sorted(libvirt_files(tree).items()):
        state = tmp_path / f"{hv}-state.xml"
        state.write_text("<node/>\n")
        conn = libvirt.open(f"test://{state}")
        try:
            for xml in kinds.get("networks", {}).values():
                conn.networkDefineXML(xml.decode()).create()
            pools = [conn.storagePoolDefineXML(x.decode()) for x in kinds["pools"].values()]
            for pool in pools:
                pool.create()
            for path, xml in kinds.get("volumes", {}).items():
                pool = _pool_for(conn, tree, path)
                volume = pool.createXML(xml.decode())
                expected = ET.fromstring(xml).findtext("capacity")
                assert str(volume.info()[1]) == expected, path
            for xml in kinds.get("domains", {}).values():
                domain = conn.defineXMLFlags(xml.decode(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
                domain.create()
                live[domain.name()] = domain.XMLDesc()
                owner = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, GEN_NS)
                assert ET.fromstring(owner).get("node") == domain.name()
        finally:
            conn.close()
    return live


def _import_libvirt():  # type: ignore[no-untyped-def]
    try:
        import libvirt
    except ImportError:  # a missing tool must fail, not skip
        pytest.fail("libvirt-python missing: pip install -e '.[test]'")
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors arrive as exceptions
    return libvirt


def _pool_for(conn, tree: Tree, volume_path: str):  # type: ignore[no-untyped-def]
    """The pool a volume belongs to: the one a domain disk names for this volume."""
    name = ET.fromstring(tree[volume_path]).findtext("name")
    for path, xml in tree.items():
        if path.startswith(volume_path.split("/volumes/")[0] + "/domains/"):
            for source in ET.fromstring(xml).iter("source"):
                if source.get("volume") == name:
                    return conn.storagePoolLookupByName(source.get("pool"))
    raise AssertionError(f"no domain disk uses {volume_path}")


ENVIRONMENTS = sorted(p.parent.name for p in (ROOT / "environments").glob("*/env.yaml"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_built_in_labs_are_accepted_by_libvirt(env: str, tmp_path: Path) -> None:
    tree = render(env)
    files = libvirt_files(tree)
    assert files, "no libvirt output"
    domains = {p for kinds in files.values() for p in kinds.get("domains", {})}
    count = validate_with_rng(tmp_path, tree)
    assert count == sum(len(f) for kinds in files.values() for f in kinds.values())
    live = define_on_test_driver(tmp_path, tree)
    assert len(live) == len(domains)


def test_lab_domain_details(tmp_path: Path) -> None:
    """PXE nodes boot disk then network; MACs and memory survive libvirt's parser."""
    tree = render("lab")
    live = define_on_test_driver(tmp_path, tree)
    master = ET.fromstring(live["master0"])
    assert [b.get("dev") for b in master.iter("boot")] == ["hd", "network"]
    assert master.findtext("memory") == str(16 * 1024 * 1024)
    assert master.find("devices/interface/model").get("type") == "virtio"
    rendered = ET.fromstring(tree["hypervisors/hv1/domains/master0.xml"])
    assert (master.find("devices/interface/mac").get("address")
            == rendered.find("devices/interface/mac").get("address"))
    helper = ET.fromstring(live["helper"])  # boots its image, no PXE
    assert [b.get("dev") for b in helper.iter("boot")] == ["hd"]


def _uefi_nat_lab(repo: Path) -> None:
    env = repo / "environments" / "lab" / "env.yaml"
    text = env.read_text()
    text = text.replace("    bridge: br0\n\nhypervisors:",
                        "    libvirt: {mode: nat, dhcp: true}\n\nhypervisors:", 1)
    text = text.replace("{name: worker1, role: worker, hypervisor: hv1,",
                        "{name: worker1, role: worker, hypervisor: hv1, firmware: uefi,", 1)
    assert "libvirt: {mode: nat" in text and "firmware: uefi" in text
    env.write_text(text)


def test_uefi_node_and_nat_network_with_dhcp_hosts(repo: Path, tmp_path: Path) -> None:
    _uefi_nat_lab(repo)
    tree = render("lab", repo)
    network = ET.fromstring(tree["hypervisors/hv1/networks/lan.xml"])
    assert network.find("forward").get("mode") == "nat"
    assert network.find("ip").get("address") == "192.168.20.1"
    hosts = {h.get("name"): (h.get("mac"), h.get("ip")) for h in network.iter("host")}
    assert len(hosts) == 7 and hosts["master0"][1] == "192.168.20.151"
    worker = ET.fromstring(tree["hypervisors/hv1/domains/worker1.xml"])
    # libvirt picks the UEFI firmware: the XML names no distribution's OVMF files
    assert worker.find("os").get("firmware") == "efi"
    assert worker.find("os/loader") is None and worker.find("os/nvram") is None
    assert worker.find("os/firmware/feature[@name='secure-boot']").get("enabled") == "no"
    assert worker.find("os/type").get("machine") == "q35"
    validate_with_rng(tmp_path, tree)
    live = define_on_test_driver(tmp_path, tree)
    assert ET.fromstring(live["worker1"]).find("os").get("firmware") == "efi"
    state = tmp_path / "net-state.xml"
    state.write_text("<node/>\n")
    libvirt = _import_libvirt()
    conn = libvirt.open(f"test://{state}")
    try:
        net = conn.networkDefineXML(tree["hypervisors/hv1/networks/lan.xml"].decode())
        net.create()
        defined = ET.fromstring(net.XMLDesc())
        assert {h.get("mac") for h in defined.iter("host")} == {m for m, _ in hosts.values()}
        assert defined.find("metadata") is not None
    finally:
        conn.close()


def test_rng_validation_can_fail(tmp_path: Path) -> None:
    """The validator really rejects a broken domain (so the checks above mean something)."""
    tree = render("lab")
    bad = tree["hypervisors/hv1/domains/master0.xml"].replace(b"<vcpu", b"<vcpus")
    with pytest.raises(AssertionError, match="rejected by libvirt's schema"):
        validate_with_rng(tmp_path, {"hypervisors/hv1/domains/master0.xml": bad})
    libvirt = _import_libvirt()
    state = tmp_path / "state.xml"
    state.write_text("<node/>\n")
    conn = libvirt.open(f"test://{state}")
    try:
        with pytest.raises(libvirt.libvirtError):
            conn.defineXMLFlags(bad.decode(), libvirt.VIR_DOMAIN_DEFINE_VALIDATE)
    finally:
        conn.close()


# RHEL 9 userspace (RHCOS 4.13+) needs the x86-64-v2 level; these are its CPUID flags.
X86_64_V2 = {"cx16", "lahf_lm", "popcnt", "sse4.1", "sse4.2", "ssse3"}
CPU_MAP = Path("/usr/share/libvirt/cpu_map")


def cpu_map_features(model: str) -> set[str]:
    """The CPUID features of a named model, from libvirt's own CPU map (parents included)."""
    path = CPU_MAP / f"x86_{model}.xml"
    assert path.exists(), f"libvirt knows no CPU model {model} ({path})"
    element = ET.parse(path).getroot().find("model")
    assert element is not None
    features = {f.get("name", "") for f in element.findall("feature")}
    parent = element.find("model")
    return features | (cpu_map_features(parent.get("name", "")) if parent is not None else set())


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_domain_gets_an_x86_64_v2_cpu(env: str) -> None:
    """No `<cpu>` means qemu64, which lacks x86-64-v2: RHCOS 4.13+ would die in its initramfs.
    KVM domains copy the host's model; TCG domains name a model whose features, per
    libvirt's CPU map, include every x86-64-v2 flag; fallback is forbidden either way."""
    for path, content in render(env).items():
        if "/domains/" not in path:
            continue
        root = ET.fromstring(content)
        cpu = root.find("cpu")
        assert cpu is not None, f"{path} has no <cpu>: libvirt would give qemu64"
        if root.get("type") == "kvm":
            assert cpu.get("mode") == "host-model", path
            continue
        model = cpu.find("model")
        assert cpu.get("mode") == "custom" and model is not None, path
        assert model.get("fallback") == "forbid", path
        assert X86_64_V2 <= cpu_map_features(model.text or ""), path


def test_qemu64_would_fail_the_cpu_check() -> None:
    """The check above can fail: libvirt's qemu64 lacks most x86-64-v2 flags."""
    assert not X86_64_V2 <= cpu_map_features("qemu64")


def test_a_domain_defined_without_the_cpu_model_is_redefined() -> None:
    """The reconciler's domain essence carries the CPU mode and model, so a VM defined
    before gen rendered `<cpu>` (qemu64: no x86-64-v2) is planned for a redefine."""
    from generator.reconcile import essence

    for path, content in render("lab").items():
        if "/domains/" not in path:
            continue
        rendered = ET.fromstring(content)
        old = ET.fromstring(content)
        old.remove(old.find("cpu"))  # type: ignore[arg-type]
        assert essence.domain(rendered)["cpu"] == "mode=host-model model="
        assert essence.domain(old)["cpu"] == ""


def _as_elementtree(element: libvirt.Element) -> ET.Element:
    """The same tree built with ElementTree, gen's prefix mapped to its namespace."""
    tag = element.tag.replace(libvirt.GEN_PREFIX, f"{{{GEN_NS}}}")
    built = ET.Element(tag, dict(element.attrib))
    built.text = element.text
    built.extend(_as_elementtree(child) for child in element.children)
    return built


HOSTILE = ['a&b', '<x>', 'say "hi"', "it's", "line\nbreak", "cr\rtab\t", " ", "", "é∑"]


@pytest.mark.parametrize("value", HOSTILE)
def test_xml_writer_is_byte_identical_to_elementtree(value: str) -> None:
    """gen's one-pass XML writer against ElementTree's indent + tostring, on a tree that puts
    awkward text (entities, quotes, line breaks, empty, non-ASCII) in every kind of slot:
    text of a leaf, attribute values, a gen-namespaced element, nesting three deep."""
    root = libvirt.Element("domain", type="kvm")
    libvirt._sub(root, "name", value)
    metadata = libvirt.Element("metadata")
    libvirt._sub(metadata, f"{libvirt.GEN_PREFIX}owner", env=value, kind="domain")
    root.append(metadata)
    devices = libvirt._sub(root, "devices")
    disk = libvirt._sub(devices, "disk", type="volume")
    libvirt._sub(disk, "source", pool=value, volume="v")
    libvirt._sub(disk, "readonly")
    devices.insert(0, libvirt.Element("controller", {"type": "scsi"}, index="0"))
    expected = _as_elementtree(root)
    ET.indent(expected, space="  ")
    assert libvirt._xml(root) == (ET.tostring(expected, encoding="unicode") + "\n").encode()
    # A parser reads the text back (a bare CR in character data is an end of line to XML).
    parsed = ET.fromstring(libvirt._xml(root))
    assert parsed.find("name").text == (value.replace("\r", "\n") or None)
    assert parsed.find("devices/disk/source").get("pool") == value


def test_xml_writer_declares_the_namespace_only_when_used() -> None:
    pool = libvirt.Element("pool", type="dir")
    libvirt._sub(pool, "name", "default")
    assert libvirt._xml(pool) == b'<pool type="dir">\n  <name>default</name>\n</pool>\n'


def _variants(node: Node) -> list[Node]:
    """`node` in every shape domain_xml knows, then with hostile values in each slot."""
    disk = node.disks[0]
    shapes = [node]
    for changes in ({"protect": True}, {"firmware": "uefi"}, {"boot": "image"},
                    {"boot": "image", "image": "debian-12"}, {"machine": "pc-q35-8.2"},
                    {"disks": (replace(disk, protect=True), replace(disk, name="data"))},
                    {"disks": (replace(disk, backing_image="base.qcow2", format="raw"),)},
                    {"nics": node.nics * 2}, {"disks": ()}, {"nics": ()}):
        shapes.append(replace(node, **changes))  # type: ignore[arg-type]
    hostile = []
    for value in HOSTILE + ["%s", "%%(x)s", "qemu", "virtio", "KiB", node.name]:
        for shape in shapes:
            hostile.append(replace(
                shape, name=f"{shape.name}{value}", role=value, machine=value or None,
                disks=tuple(replace(d, pool=value, format=value, backing_image=d.backing_image
                                    and value) for d in shape.disks),
                nics=tuple(replace(n, mac=value, network=value) for n in shape.nics)))
            hostile.append(replace(shape, name=f"{shape.name}-{len(hostile)}",
                                   memory_mib=len(hostile), vcpu=len(value) or 1))
    return shapes + hostile


@pytest.mark.parametrize("env_name", ["lab", "k8s-lab"])
@pytest.mark.parametrize("domain_type", ["kvm", "qemu"])
def test_templated_documents_are_the_trees_documents(env_name: str, domain_type: str) -> None:
    """The volumes and domains filled into a shape's template are byte for byte what their
    own element trees write, in every shape and with hostile values in every slot (a value
    that is also one of the document's constants makes the template refuse, never lie)."""
    env = render_environment(f"env/{env_name}", cwd=ROOT).loaded.model
    hv = replace(env.hypervisors[0], domain_type=domain_type)
    volumes, domains = libvirt.Shapes(), libvirt.Shapes()
    nodes = [v for n in env.nodes for v in _variants(n)]
    for node in nodes:
        for index in range(len(node.disks)):
            key, values = libvirt._volume_shape(node, index, hv)
            tree = libvirt._xml(libvirt.volume_xml(env, node, index, hv))
            assert volumes.document(key, values,
                                    libvirt.volume_xml, env, node, index, hv) == tree
        key, values = libvirt._domain_shape(env, node, hv)
        tree = libvirt._xml(libvirt.domain_xml(env, node, hv))
        assert domains.document(key, values, libvirt.domain_xml, env, node, hv) == tree
    # the templates were used: most shapes had one, and far fewer shapes than documents
    made = [t for t in domains.templates.values() if isinstance(t, libvirt.Template)]
    assert len(made) >= len(domains.templates) / 2 and len(domains.templates) < len(nodes) / 5
    assert any(isinstance(t, libvirt.Template) for t in volumes.templates.values())


def test_a_template_refuses_values_that_are_also_constants() -> None:
    root = libvirt.Element("disk", type="volume")
    libvirt._sub(root, "driver", name="qemu", type="qemu")
    assert libvirt.template(root, ["qemu"]) is None  # which "qemu" is the value?
    made = libvirt.template(root, ["qemu", "qemu"])
    assert made is not None and made.fill(["a&b", '"q"']) == (
        b'<disk type="volume">\n  <driver name="a&amp;b" type="&quot;q&quot;" />\n</disk>\n')


# The fields _variants changes, and the ones the volume and domain documents never read
# (the hypervisor picks the documents' folder; the rest is the OS's and DNS's business).
VARIED = {"Node": {"name", "role", "vcpu", "memory_mib", "disks", "nics", "firmware", "boot",
                   "image", "protect", "machine"},
          "Disk": {"name", "pool", "format", "backing_image", "protect"},
          "Nic": {"network", "mac"}}
NOT_IN_LIBVIRT_DOCUMENTS = {"Node": {"hypervisor", "fqdn", "install_dev", "os"},
                            "Disk": {"size_bytes", "volume"},  # both reach it as values only
                            "Nic": {"ip", "interface"}}


def test_every_model_field_is_varied_or_known_unused_by_the_templates() -> None:
    """A field added to Node, Disk or Nic must be varied by _variants (so the template test
    sees it change between nodes of one shape) or declared unused here: a field the
    documents read but neither the shape key nor the values name would be copied from the
    shape's first node into every other's document."""
    import dataclasses

    from generator.model import Disk, Nic

    for cls in (Node, Disk, Nic):
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == VARIED[cls.__name__] | NOT_IN_LIBVIRT_DOCUMENTS[cls.__name__], cls
