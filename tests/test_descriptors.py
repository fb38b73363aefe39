"""Family and provider descriptors: each claim they make is held to what gen really renders.

Every built-in environment (the repo's, and one scaffolded from each built-in blueprint) is
rendered family by family: each family's output patterns must match every path it renders
(so diff routing and reconcile scopes see all of it) and each pattern must match one (no
dead pattern). A toy family registered from outside shows the one-module-one-line promise
of docs/architecture.md: rendered, diffed under its own section, routed to its provider.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from clirun import gen

from generator.commands.reconcile import click_option, provider_options
from generator.diff import Side, build_report
from generator.diff.semantic import OTHER, Finding, families_of, summarised_families
from generator.environment import load_environment
from generator.errors import UsageError
from generator.families import (
    FamilyDescriptor,
    Outputs,
    Pins,
    descriptors,
    files,
    register,
    render_all,
)
from generator.model import Environment
from generator.profiles import ServiceSpec
from generator.reconcile.base import Action
from generator.reconcile.plan import Desired, Settings, build_plan, check_names
from generator.reconcile.providers import (
    PROVIDERS,
    ProviderDescriptor,
    ProviderPlan,
    by_name,
    option,
    specs,
)
from generator.tree import Tree

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINTS = ("kolla-aio", "kubeadm", "openshift-upi")
# lab A with the other DNS/DHCP servers gen renders for (no built-in environment uses them)
LAB_SERVICES = "services:\n  dns:\n    provider: bind\n"
PROVIDER_VARIANTS = {
    "lab-dnsmasq": "services:\n  dhcp: {provider: dnsmasq}\n  dns:\n    provider: dnsmasq\n",
    "lab-kea": "services:\n  dhcp: {provider: kea}\n  dns:\n    provider: bind\n",
}


@pytest.fixture(scope="module")
def builtin_envs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Environment]:
    """lab (also with dnsmasq and with Kea), k8s-lab and one environment per built-in
    blueprint, with their defaults."""
    repo = tmp_path_factory.mktemp("repo")
    for name in ("environments", "blueprints"):
        shutil.copytree(ROOT / name, repo / name)
    (repo / "lock").mkdir()
    lab = (repo / "environments/lab/env.yaml").read_text()
    assert lab.count(LAB_SERVICES) == 1
    for name, services in PROVIDER_VARIANTS.items():
        shutil.copytree(repo / "environments/lab", repo / "environments" / name)
        (repo / "environments" / name / "env.yaml").write_text(
            lab.replace(LAB_SERVICES, services).replace("name: lab\n", f"name: {name}\n", 1))
    # k8s-lab with a mirror registry on its storage node (no built-in environment runs one)
    k8s = (repo / "environments/k8s-lab/env.yaml").read_text()
    shutil.copytree(repo / "environments/k8s-lab", repo / "environments/k8s-mirror")
    (repo / "environments/k8s-mirror/env.yaml").write_text(
        k8s.replace("name: k8s-lab\n", "name: k8s-mirror\n", 1)
        + '\nmirror:\n  registry: "registry.k8s.test:5000"\n  host: test-storage1\n')
    for blueprint in BLUEPRINTS:
        made = gen("new", f"bp-{blueprint}", "--blueprint", blueprint, "--no-input",
                   "--no-lock", cwd=repo)
        assert made.code == 0, made.err
    return {d.name: load_environment(f"env/{d.name}", repo).model
            for d in sorted((repo / "environments").iterdir())}


@pytest.fixture(scope="module")
def rendered(builtin_envs: dict[str, Environment]) -> dict[str, dict[str, Tree]]:
    """family name -> environment name -> what that family alone renders."""
    return {family.name: {name: family.render(env, Pins()) for name, env in builtin_envs.items()}
            for family in descriptors()}


def test_every_rendered_path_is_claimed_by_its_family(rendered: dict[str, dict[str, Tree]]
                                                      ) -> None:
    for family in descriptors():
        unclaimed = sorted({p for tree in rendered[family.name].values() for p in tree
                            if not family.claims(p)})
        assert not unclaimed, f"{family.name} renders paths its outputs miss: {unclaimed[:5]}"


def test_no_output_pattern_is_dead(rendered: dict[str, dict[str, Tree]]) -> None:
    for family in descriptors():
        paths = {p for tree in rendered[family.name].values() for p in tree}
        for out in family.outputs:
            for pattern in out.patterns:
                assert any(Outputs((pattern,)).claims(p) for p in paths), \
                    f"{family.name}: {pattern} matches nothing it renders"


def test_diff_routes_each_rendered_file_to_its_own_family(
        rendered: dict[str, dict[str, Tree]]) -> None:
    sections = {s.key: s for s in summarised_families()}
    for family in descriptors():
        expected = [sections[family.name] if family.summarise else OTHER]
        for tree in rendered[family.name].values():
            for path in tree:
                assert families_of(path) == expected, path


def test_provider_scopes_split_the_converged_tree(builtin_envs: dict[str, Environment]) -> None:
    """Each converged path belongs to exactly one provider, and the files provider gets
    exactly the `hosts/<host>/<service>/` directories the descriptors name."""
    services = {out.service for d in descriptors() for out in d.outputs if out.service}
    for name, env in builtin_envs.items():
        tree = render_all(env, Pins())
        scopes = {d.name: d.scope(tree) for d in PROVIDERS}
        for path in tree:
            owners = [p for p, scope in scopes.items() if path in scope]
            assert len(owners) <= 1, (name, path, owners)
        assert set(scopes["files"]) == {p for p in tree if p.startswith("hosts/")}
        assert {p.split("/")[2] for p in scopes["files"]} <= services
        assert set(scopes["libvirt"]) >= {p for p in tree if p.startswith("hypervisors/")}
        assert set(scopes["kubernetes"]) == {p for p in tree
                                            if p.split("/")[2:3] == ["kubernetes"]}


# --- a toy family, registered the way docs/architecture.md shows -----------------------------


def render_motd(env: Environment, pins: Pins) -> Tree:
    return {f"hosts/{node.name}/motd/motd": f"Welcome to {node.name} of {env.name}\n".encode()
            for node in env.nodes if node.role == "helper"}


def summarise_motd(changes: list[object]) -> list[Finding]:
    return [Finding("~", "message of the day", c.path) for c in changes]  # type: ignore[attr-defined]


# where the files provider installs it on any host OS profile (no profile table knows motd)
MOTD_INSTALL = ServiceSpec("/etc/motd.d", check=("test", "-s", "{staged}/motd"))
MOTD = FamilyDescriptor("motd", render_motd,
                        files("motd", "hosts/*/motd/*", install={"*": MOTD_INSTALL}),
                        summarise=summarise_motd, title="Messages of the day")


@pytest.fixture
def motd() -> Iterator[FamilyDescriptor]:
    unregister = register(MOTD)
    yield MOTD
    unregister()


def test_a_registered_family_is_rendered_diffed_and_routed(motd: FamilyDescriptor) -> None:
    env = load_environment("env/lab", ROOT).model
    tree = render_all(env, Pins())
    ours = sorted(p for p in tree if "/motd/" in p)
    assert ours == ["hosts/helper/motd/motd"]
    assert tree[ours[0]] == b"Welcome to helper of lab\n"

    changed = {**tree, ours[0]: b"Welcome back\n"}
    report = build_report(Side("a", None, "lab", tree), Side("b", None, "lab", changed))
    (section,) = report.sections
    assert (section.family.key, section.family.title) == ("motd", "Messages of the day")
    assert [f.line() for f in section.findings] == [
        "~ message of the day: hosts/helper/motd/motd"]

    assert set(by_name()["files"].scope(tree)) >= {ours[0]}
    desired = Desired(env, tree, "test", False)
    # `--reload motd=...` names a service the environment now has
    from generator.reconcile.providers import FilesOptions
    check_names(desired, Settings(options=(FilesOptions(reloads=(("motd", "true"),)),)))


def test_a_registered_family_is_converged_with_its_own_install_rule(
        motd: FamilyDescriptor, tmp_path: Path) -> None:
    """No profile row, no edit of reconcile/files.py: the descriptor's install rule is used."""
    from generator.reconcile.providers import FilesOptions

    env = load_environment("env/lab", ROOT).model
    tree = render_all(env, Pins())
    root = tmp_path / "root"
    settings = Settings(providers=("files",),
                        options=(FilesOptions(targets=(("helper", str(root)),)),))
    plan = build_plan(Desired(env, tree, "test", False), settings)
    assert not [n for n in plan.notices if "'motd'" in n], plan.notices
    (action,) = [a for a in plan.actions if a.name == "helper/motd"]
    plan.providers["files"].apply(action)
    assert (root / "etc/motd.d/motd").read_bytes() == b"Welcome to helper of lab\n"


def test_a_family_name_is_registered_once(motd: FamilyDescriptor) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(dataclasses.replace(MOTD, outputs=(Outputs(("x/*",)),)))


# --- a toy provider: options generated, plan as a value ---------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BellOptions:
    rings: tuple[tuple[str, str], ...] = option(
        "--bell", pairs="HOST=TIMES", help="Ring HOST's bell.")
    loud: bool = option("--loud", kind="flag", default=False, help="Ring loudly.")


class Bell:
    name = "bell"

    def __init__(self, options: BellOptions) -> None:
        self.options = options

    def plan(self, env: Environment, tree: Tree) -> list[Action]:
        return [Action("create", "bell", "ring", host, 60) for host, _ in self.options.rings]

    def apply(self, action: Action) -> None:
        raise AssertionError("not applied in this test")


def plan_bell(provider: Bell, env: Environment, scope: Tree, tree: Tree) -> ProviderPlan:  # type: ignore[override]
    actions = tuple(provider.plan(env, scope))
    return ProviderPlan(actions, notices=(f"bell: {len(scope)} file(s) in scope",),
                        conflicts=())


BELL = ProviderDescriptor("bell", BellOptions, lambda settings, options: Bell(options),
                          plan_bell)  # type: ignore[arg-type]


def test_provider_flags_are_generated_and_read_back_typed() -> None:
    @click.command()
    def command(**values: object) -> None:
        click.echo(repr(BELL.read(values)))

    for name, spec in reversed(specs(BellOptions)):
        command = click_option(BELL.prefix + name, spec)(command)
    runner = CliRunner()
    result = runner.invoke(command, ["--bell", "helper=3", "--bell", "hv=1", "--loud"])
    assert result.output.strip() == (
        "BellOptions(rings=(('helper', '3'), ('hv', '1')), loud=True)")
    refused = runner.invoke(command, ["--bell", "helper"])
    assert isinstance(refused.exception, UsageError)
    assert str(refused.exception) == "--bell 'helper': write it as HOST=TIMES"


def test_every_builtin_flag_is_generated_once() -> None:
    flags = [spec.flag for d in PROVIDERS for _, spec in specs(d.options)]
    assert len(flags) == len(set(flags)) == len(provider_options())
    assert {"--files-target", "--files-exec", "--reload", "--ignition-dir", "--store",
            "--kubeconfig", "--context", "--wait", "--wait-timeout", "--adopt",
            "--openshift-install", "--installer-state-dir", "--ssh-wait", "--install-packages",
            "--kubeadm-state-dir", "--kubeadm-exec", "--kubeadm-sha256", "--kubeadm-node-wait",
            "--kubeadm-ready-timeout", "--mirror-plain-http"} == set(flags)


CHIME = FamilyDescriptor("chime", lambda env, pins: {"bells/chime.txt": b"ding\n"},
                         (Outputs(("bells/*",), "bell"),))


def test_a_providers_scope_and_notices_come_back_as_values() -> None:
    env = load_environment("env/lab", ROOT).model
    options = BellOptions(rings=(("helper", "2"),))
    unregister = register(CHIME)
    try:
        tree = render_all(env, Pins())
        plan = build_plan(Desired(env, tree, "test", False), Settings(options=(options,)),
                          providers=[(BELL, Bell(options))])
        scope = BELL.scope(tree)
    finally:
        unregister()
    assert [a.key for a in plan.actions] == ["bell:ring:helper:create"]
    assert plan.notices == ("bell: 1 file(s) in scope",)
    assert plan.complete and not plan.conflicts
    assert scope == {"bells/chime.txt": b"ding\n"}
    assert BELL.scope(tree) == {}  # unregistered: nothing routes to the bell any more
