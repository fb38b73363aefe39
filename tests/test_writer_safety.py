"""The render writer against a hostile or interrupted output directory, through real `gen`
processes: symlinks planted in the output never redirect a write or a read, special files
never hang it, a SIGKILLed first render resumes, and concurrent renders never collide."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import gen

from generator.writer import MARKER, read_tree

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from fstree import snapshot
from genenv import write_environment  # noqa: E402

SECRET = "pull-secret-7f3a9c-do-not-print"


def temporaries(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.gen-tmp"))


@pytest.fixture
def rendered(repo: Path) -> Path:
    """lab rendered once into repo/rendered/lab."""
    result = gen("render", "env/lab", cwd=repo)
    assert result.code == 0, result.err
    return repo / "rendered" / "lab"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory outside the output that a planted symlink points into."""
    place = tmp_path / "victim"
    place.mkdir()
    (place / "precious.txt").write_text("keep me\n")
    return place


def one_line_refusal(result, *parts: str) -> None:
    assert result.code == 1, (result.code, result.out, result.err)
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    for part in parts:
        assert part in lines[0], lines[0]


# ---- symlinks planted in the output ----------------------------------------------------------


def test_a_directory_symlink_in_the_output_is_refused_and_nothing_is_written(
        rendered: Path, victim: Path, repo: Path) -> None:
    # `hosts` sends every file under it elsewhere when followed
    hosts = rendered / "hosts"
    hosts.rename(victim / "hosts-moved")
    hosts.symlink_to(victim)
    before, outside = snapshot(rendered), snapshot(victim)
    result = gen("render", "env/lab", cwd=repo)
    one_line_refusal(result, f"{hosts} is a symlink inside the output", "never writes through")
    assert snapshot(rendered) == before and snapshot(victim) == outside


def test_a_planted_temp_symlink_never_overwrites_its_target(rendered: Path, victim: Path,
                                                            repo: Path) -> None:
    domain = rendered / "hypervisors/hv1/domains/master0.xml"
    domain.write_text("edited, so the next render stages a new copy\n")
    (domain.parent / f".{domain.name}.gen-tmp").symlink_to(victim / "precious.txt")
    outside = snapshot(victim)
    result = gen("render", "env/lab", cwd=repo)
    one_line_refusal(result, ".master0.xml.gen-tmp is a symlink inside the output")
    assert snapshot(victim) == outside
    assert domain.read_text() == "edited, so the next render stages a new copy\n"


def test_a_file_symlink_in_the_output_is_refused_not_read(rendered: Path, tmp_path: Path,
                                                          repo: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text(SECRET)
    named = rendered / "hosts/helper/dns/named.conf"
    named.unlink()
    named.symlink_to(secret)
    for args in (("render", "env/lab"), ("render", "env/lab", "--check")):
        result = gen(*args, cwd=repo)
        one_line_refusal(result, f"{named} is a symlink inside the output")
        assert SECRET not in result.out + result.err
    assert secret.read_text() == SECRET and named.is_symlink()


def test_a_marker_symlink_to_a_secret_does_not_print_the_secret(repo: Path,
                                                                 tmp_path: Path) -> None:
    secret = tmp_path / "pull-secret"
    secret.write_text(SECRET + "\n")
    out = repo / "rendered" / "lab"
    out.mkdir(parents=True)
    (out / "notes.txt").write_text("x\n")
    (out / MARKER).symlink_to(secret)
    result = gen("render", "env/lab", cwd=repo)
    one_line_refusal(result, f"{out / MARKER} is a symlink")
    assert SECRET not in result.out + result.err
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "notes.txt"]


def test_a_marker_holding_foreign_text_is_not_echoed(rendered: Path, repo: Path) -> None:
    (rendered / MARKER).write_text(f"lab\n{SECRET}\n")
    before = snapshot(rendered)
    result = gen("render", "env/lab", cwd=repo)
    one_line_refusal(result, "does not hold an environment name")
    assert SECRET not in result.out + result.err
    assert snapshot(rendered) == before


def test_the_output_directory_itself_may_not_be_a_symlink(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    assert gen("render", "env/lab", "--out", str(elsewhere), cwd=repo).code == 0
    before = snapshot(elsewhere)
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    result = gen("render", "env/lab", "--out", str(link), cwd=repo)
    one_line_refusal(result, f"{link} is a symlink")
    assert snapshot(elsewhere) == before


def test_a_rendered_symlink_in_the_repo_does_not_carry_the_default_output(
        repo: Path, victim: Path) -> None:
    # a pull request can commit `rendered` as a symlink (.gitignore does not stop it)
    (repo / "rendered").symlink_to(victim)
    outside = snapshot(victim)
    result = gen("render", "env/lab", cwd=repo)
    one_line_refusal(result, f"{repo / 'rendered'} is a symlink")
    assert snapshot(victim) == outside


def test_a_directory_where_a_file_now_goes_is_one_line_not_an_internal_error(
        rendered: Path, repo: Path) -> None:
    named = rendered / "hosts/helper/dns/named.conf"
    named.unlink()
    (named / "inner").mkdir(parents=True)
    (named / "inner" / "x").write_text("x\n")
    result = gen("render", "env/lab", cwd=repo)
    assert result.code == 1, result.err
    assert result.err.strip().endswith("(remove it by hand, then render again)"), result.err
    assert f"cannot replace {named}" in result.err
    assert temporaries(rendered) == []


# ---- special files ---------------------------------------------------------------------------


def test_a_fifo_in_the_output_is_refused_without_hanging(rendered: Path, repo: Path) -> None:
    fifo = rendered / "hosts/helper/dns/named.conf"
    fifo.unlink()
    os.mkfifo(fifo)
    for args in (("render", "env/lab"), ("render", "env/lab", "--check")):
        result = gen(*args, cwd=repo, timeout=60)  # the old writer blocked on open() forever
        one_line_refusal(result, f"{fifo} is not a regular file")


def test_a_marker_that_is_a_fifo_is_refused_without_hanging(repo: Path) -> None:
    out = repo / "rendered" / "lab"
    out.mkdir(parents=True)
    os.mkfifo(out / MARKER)
    result = gen("render", "env/lab", cwd=repo, timeout=60)
    one_line_refusal(result, f"{out / MARKER} is not a regular file")


# ---- interrupted renders -----------------------------------------------------------------------


def _kill_mid_staging(repo: Path, out: Path) -> bool:
    """Start a render and SIGKILL it as soon as something is staged: a temporary inside an
    existing `out`, or, for a first render, a staging directory beside it holding files."""
    proc = subprocess.Popen([sys.executable, "-m", "generator", "render", "env/big", "--out",
                             str(out)], cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if _any_temporary(out) or _staging_with_files(out):
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _any_temporary(root: Path) -> bool:
    if not (root.is_dir() and (root / MARKER).exists()):
        return False
    for _, _, filenames in os.walk(root):
        if any(name.endswith(".gen-tmp") for name in filenames):
            return True
    return False


def _staging_dirs(out: Path) -> list[Path]:
    return [p for p in out.parent.glob(f".{out.name}.*.gen-tmp") if p.is_dir()]


def _staging_with_files(out: Path) -> bool:
    for staging in _staging_dirs(out):
        try:
            if sum(1 for _ in staging.iterdir()) > 2:  # the marker and some output
                return True
        except FileNotFoundError:  # renamed into place meanwhile
            pass
    return False


def test_a_sigkilled_first_render_leaves_no_output_and_the_next_succeeds(
        tmp_path: Path) -> None:
    """A first render stages the whole tree beside the output and renames it once: killed
    while staging, there is no output at all (nothing half-written), and the next render
    removes the dead staging directory and renders in full."""
    write_environment(tmp_path, nodes=300, hypervisors=10)
    clean = tmp_path / "clean"
    assert gen("render", "env/big", "--out", str(clean), cwd=tmp_path).code == 0
    for attempt in range(6):  # the kill must land while files are staged
        out = tmp_path / f"out{attempt}"
        if _kill_mid_staging(tmp_path, out):
            break
    else:
        pytest.fail("the render always finished before it could be killed")
    assert not out.exists(), "a first render appears whole or not at all"
    assert _staging_dirs(out), "the killed run's staging directory is left beside it"
    again = gen("render", "env/big", "--out", str(out), cwd=tmp_path)
    assert again.code == 0, again.err
    assert _staging_dirs(out) == [] and temporaries(out) == []
    assert read_tree(out) == read_tree(clean)
    assert (out / MARKER).read_text() == "big\n"


def test_a_sigkilled_render_into_an_existing_output_is_resumed_by_the_next(
        tmp_path: Path) -> None:
    """Into an existing output (here: empty, so every file is added) files are staged one
    by one beside their targets, the marker first: a kill leaves a directory gen owns."""
    write_environment(tmp_path, nodes=300, hypervisors=10)
    clean = tmp_path / "clean"
    assert gen("render", "env/big", "--out", str(clean), cwd=tmp_path).code == 0
    for attempt in range(6):
        out = tmp_path / f"out{attempt}"
        out.mkdir()
        if _kill_mid_staging(tmp_path, out):
            break
    else:
        pytest.fail("the render always finished before it could be killed")
    assert (out / MARKER).read_text() == "big\n", "the marker is written first"
    again = gen("render", "env/big", "--out", str(out), cwd=tmp_path)
    assert again.code == 0, again.err
    assert temporaries(out) == []
    assert read_tree(out) == read_tree(clean)


def test_temporaries_left_by_a_killed_run_are_removed_not_reported(rendered: Path,
                                                                   repo: Path) -> None:
    litter = rendered / "hosts/helper/dns/.named.conf.4242-deadbeef.gen-tmp"
    litter.write_text("half written\n")
    result = gen("render", "env/lab", "--format", "json", cwd=repo)
    assert result.code == 0, result.err
    assert json.loads(result.out)["removed"] == []
    assert not litter.exists()


def test_a_first_render_killed_before_its_marker_existed_is_not_refused(repo: Path) -> None:
    # what an older gen (marker written last) left when it was killed while staging
    out = repo / "rendered" / "lab"
    (out / "hosts/helper/dns").mkdir(parents=True)
    (out / "hosts/helper/dns/.named.conf.gen-tmp").write_text("half\n")
    (out / ".README.md.gen-tmp").write_text("half\n")
    result = gen("render", "env/lab", cwd=repo)
    assert result.code == 0, result.err
    assert temporaries(out) == [] and (out / MARKER).read_text() == "lab\n"


# ---- concurrent renders and locks ----------------------------------------------------------------


def test_concurrent_first_renders_into_one_directory_both_succeed(tmp_path: Path) -> None:
    write_environment(tmp_path, nodes=300, hypervisors=10)
    clean = tmp_path / "clean"
    assert gen("render", "env/big", "--out", str(clean), cwd=tmp_path).code == 0
    for round_ in range(3):
        out = tmp_path / f"shared{round_}"
        procs = [subprocess.Popen([sys.executable, "-m", "generator", "render", "env/big",
                                   "--out", str(out)], cwd=tmp_path, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
        for proc in procs:
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        assert [code for code, _ in results] == [0, 0], results
        assert temporaries(out) == [] and read_tree(out) == read_tree(clean)


WRITER_LOOP = """
import sys
from pathlib import Path
from generator.writer import write_tree
out, me = Path(sys.argv[1]), int(sys.argv[2])
for i in range(40):
    content = f"writer {me} round {i}\\n".encode()
    write_tree(out, {f"d{j}/f{k}.txt": content for j in range(4) for k in range(10)}, "lab")
"""


def test_processes_writing_one_directory_in_a_loop_never_collide(tmp_path: Path) -> None:
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(out), str(me)],
                              stderr=subprocess.PIPE, text=True) for me in range(3)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    tree = read_tree(out)
    assert len(tree) == 40 and len(set(tree.values())) == 1, "one writer's tree, whole"
    assert temporaries(out) == []
