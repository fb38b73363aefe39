"""`gen diff --format html` opened in a real browser (headless Chromium driven by Selenium,
networking disabled: tests/browser.py), and gen's Mermaid pictures drawn to SVG by the real
Mermaid library (npm `mermaid`, loaded from disk in tests/.mermaid) in the same browser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from browser import chromium, console_errors, needs_chromium, off_machine, pixel_spread, requests
from clirun import gen
from test_graph import big_document, write_big
from test_graph_diff import worker1_moved

from generator import graph
from generator.diff import Side, build_report
from generator.diff.semantic import Finding
from generator.environment import load_environment

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
MERMAID_JS = TESTS / ".mermaid" / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def lab_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of lab A's worker1 moving to another address, through the real CLI."""
    repo = tmp_path_factory.mktemp("site")
    worker1_moved(repo)
    result = gen("diff", "env/lab", "--base", "HEAD~1", "--head", "HEAD", "--format", "html",
                 "--out", "report", cwd=repo)
    assert result.code == 0, result.err
    page = repo / "report" / "gen-diff-lab.html"
    assert (repo / result.out.strip()).resolve() == page.resolve()
    return page


def visible(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [e for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]


def test_report_opens_offline_with_picture_filters_and_screenshot(
        lab_report: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with chromium(tmp_path / "profile") as driver:
        driver.get(lab_report.as_uri())
        # the picture: dot's SVG inline, worker1 outlined in the "changed" colour
        svg = driver.find_element(By.CSS_SELECTOR, "#picture svg")
        nodes = svg.find_elements(By.CSS_SELECTOR, "g.node")
        assert len(nodes) > 10
        worker1 = [n for n in nodes if "worker1 (worker)" in n.text]
        assert len(worker1) == 1 and "192.168.20.172" in worker1[0].text
        outline = worker1[0].find_element(By.CSS_SELECTOR, "polygon").get_attribute("stroke")
        assert outline == graph.DOT_COLOUR["changed"]
        assert svg.size["width"] > 200 and svg.size["height"] > 100

        # filters: one family at a time hides every other family's rows and files
        items = driver.find_elements(By.CSS_SELECTOR, "[data-family]")
        families = {e.get_attribute("data-family") for e in items}
        assert len(families) >= 4  # DNS, DHCP, PXE, HAProxy, Ignition
        assert len(visible(driver, "tr[data-family]")) == len(
            driver.find_elements(By.CSS_SELECTOR, "tr[data-family]"))
        for family in sorted(families):
            driver.find_element(By.CSS_SELECTOR,
                                f'button[data-filter=family][data-value="{family}"]').click()
            shown = visible(driver, "[data-family]")
            assert shown and {e.get_attribute("data-family") for e in shown} == {family}
            assert len(shown) == sum(e.get_attribute("data-family") == family for e in items)
        dns = driver.find_element(By.XPATH, "//button[@data-filter='family'][.='DNS records']")
        dns.click()
        rows = visible(driver, "tr[data-family]")
        assert any("worker1" in r.text and "192.168.20.172" in r.text for r in rows)
        assert dns.get_attribute("aria-pressed") == "true"
        driver.find_element(By.CSS_SELECTOR, 'button[data-filter=family][data-value=""]').click()
        assert len(visible(driver, "[data-family]")) == len(items)

        # by host: the cluster's files (Ignition) only
        cluster = driver.find_element(By.XPATH, "//button[@data-filter='host'][.='cluster ocp4']")
        cluster.click()
        shown = visible(driver, "details.file")
        assert shown and all("clusters/ocp4/" in e.text for e in shown)
        assert not any("hosts/helper/" in e.text for e in shown)
        driver.find_element(By.CSS_SELECTOR, 'button[data-filter=host][data-value=""]').click()

        # side by side, collapsible: a file opens to a four-column table, old left, new right
        zone = next(e for e in visible(driver, "details.file") if "ocp4.example.com.zone" in e.text)
        assert not zone.find_element(By.CSS_SELECTOR, "table.sbs").is_displayed()
        zone.find_element(By.TAG_NAME, "summary").click()
        rows = [r for r in zone.find_elements(By.CSS_SELECTOR, "table.sbs tr")
                if r.find_elements(By.CSS_SELECTOR, "td.del")]
        assert any("192.168.20.162" in r.find_elements(By.TAG_NAME, "td")[1].text
                   and "192.168.20.172" in r.find_elements(By.TAG_NAME, "td")[3].text
                   for r in rows)

        driver.find_element(By.CSS_SELECTOR, "button[data-open=all]").click()
        driver.execute_script("window.scrollTo(0, 0)")
        png = driver.get_screenshot_as_png()
        (tmp_path / "report.png").write_bytes(png)
        colours, variance = pixel_spread(png)
        assert colours > 50 and variance > 100, (colours, variance)
        assert console_errors(driver) == []  # a CSP refusal or script error would show here
        urls = requests(driver)
        assert lab_report.as_uri() in urls
        assert off_machine(urls) == []


def test_the_request_check_sees_what_a_page_asks_for(tmp_path: Path) -> None:
    """The offline check can fail: a page that asks for outside resources shows them."""
    page = tmp_path / "leaky.html"
    page.write_text('<!doctype html><img src="http://gen-test.invalid/x.png">'
                    '<script src="https://cdn.gen-test.invalid/x.js"></script>')
    with chromium(tmp_path / "profile") as driver:
        driver.get(page.as_uri())
        leaked = off_machine(requests(driver))
    assert "http://gen-test.invalid/x.png" in leaked
    assert "https://cdn.gen-test.invalid/x.js" in leaked


HOSTILE = '<script>window.__pwned = 1</script><img src="http://gen-test.invalid/p" ' \
          'onerror="window.__pwned = 2">'


def test_hostile_names_are_inert(tmp_path: Path) -> None:
    """A node name, a path, a finding and file content carrying markup: shown as text, never
    run, never fetched."""
    from selenium.webdriver.common.by import By

    from generator.commands.diff import html_page

    vm = graph.Element("vm:evil", "vm", f"{HOSTILE} (worker)\n2 vCPU", parent="hv:hv1")
    hv = graph.Element("hv:hv1", "hypervisor", f"hypervisor hv1{HOSTILE}")
    base = Side("main", None, "lab", {"hosts/h/a.txt": b"old\n"},
                topology=graph.Topology((hv,), ()))
    head = Side(f"pr{HOSTILE}", None, "lab",
                {"hosts/h/a.txt": f"{HOSTILE}\n".encode(), f"hosts/{HOSTILE}/b.txt": b"x\n"},
                topology=graph.Topology((hv, vm), ()))
    report = build_report(base, head)
    report = type(report)(report.env, report.base, report.head,
                          (Finding("~", f"vm {HOSTILE}", HOSTILE, HOSTILE),), report.inputs,
                          report.secrets, report.sections)
    page_text = html_page(report)
    assert page_text.count("<script") == 1  # ours; every other one is &lt;script
    page = tmp_path / "hostile.html"
    page.write_text(page_text)
    with chromium(tmp_path / "profile") as driver:
        driver.get(page.as_uri())
        driver.find_element(By.CSS_SELECTOR, "button[data-open=all]").click()
        assert driver.execute_script("return window.__pwned === undefined")
        assert driver.execute_script("return document.images.length") == 0
        assert driver.execute_script("return document.querySelectorAll('[onerror]').length") == 0
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "<script>window.__pwned = 1</script>" in body
        picture = driver.find_element(By.CSS_SELECTOR, "#picture svg").text
        assert "<script>window.__pwned = 1</script>" in picture
        assert off_machine(requests(driver)) == []


# --- Mermaid: the PR comment's picture drawn by the real library ----------------------------

HARNESS = """<!doctype html><meta charset=utf-8><body><div id=out></div>
<script src="MERMAID"></script>
<script type=application/json id=charts>CHARTS</script>
<script>
window.drawAll = async function () {
  mermaid.initialize({startOnLoad: false, securityLevel: "strict", maxTextSize: 10000000,
                      maxEdges: 100000});
  const charts = JSON.parse(document.getElementById("charts").textContent);
  const out = [];
  for (const [i, text] of charts.entries()) {
    try {
      const {svg} = await mermaid.render("chart" + i, text);
      const box = document.getElementById("out");
      box.innerHTML = svg;
      const marks = {};
      for (const mark of ["added", "changed", "removed"]) {
        marks[mark] = box.querySelectorAll("g.node." + mark).length;
      }
      out.push({ok: true, nodes: box.querySelectorAll("g.node").length, marks: marks,
                size: svg.length, error: svg.includes("Syntax error")});
    } catch (e) {
      out.push({ok: false, error: String(e && e.message || e)});
    }
  }
  return out;
};
</script>"""


def expected_marks(text: str) -> dict[str, int]:
    """How many boxes each `class A,B,C mark` line of gen's Mermaid text marks."""
    found = {"added": 0, "changed": 0, "removed": 0}
    for ids, mark in re.findall(r"^\s*class (\S+) (added|changed|removed)$", text, re.M):
        found[mark] += len(ids.split(","))
    return found


def draw(charts: list[str], tmp_path: Path) -> list[dict[str, Any]]:
    page = tmp_path / "harness.html"
    data = json.dumps(charts).replace("</", "<\\/")
    page.write_text(HARNESS.replace("MERMAID", MERMAID_JS.as_uri()).replace("CHARTS", data))
    with chromium(tmp_path / "profile") as driver:
        driver.set_script_timeout(900)
        driver.get(page.as_uri())
        results = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.drawAll().then(done, (e) => done([{ok: false, error: String(e)}]));")
        assert off_machine(requests(driver)) == []
    return list(results)


@pytest.mark.skipif(not MERMAID_JS.is_file(),
                    reason="needs tests/.mermaid (tests/run.sh installs the mermaid package)")
def test_mermaid_draws_every_builtin_environment_diff_and_thousand_nodes(tmp_path: Path) -> None:
    charts, names = [], []
    for env_file in sorted((ROOT / "environments").glob("*/env.yaml")):
        model = load_environment(f"env/{env_file.parent.name}", ROOT).model
        charts.append(graph.to_mermaid(graph.build(model)))
        names.append(env_file.parent.name)
    for golden in sorted((TESTS / "golden_diff").glob("*.md")):  # marked, with a legend
        block = re.search(r"```mermaid\n(.*?)```\n", golden.read_text(), re.S)
        assert block is not None, golden
        charts.append(block.group(1))
        names.append(f"diff {golden.stem}")
    data = big_document(1000, 20)
    write_big(tmp_path / "base", data=data)
    for node in [n for n in data["nodes"] if n["role"] == "worker"][::9][:100]:
        node["vcpu"] = 8
    data["nodes"] = [n for n in data["nodes"] if n["name"] != "worker5"]
    write_big(tmp_path / "head", data=data)
    base, head = (graph.build_full(load_environment("env/big", tmp_path / side).model)
                  for side in ("base", "head"))
    charts.append(graph.to_mermaid(graph.review(base, head), legend=True))
    names.append("1,000 nodes, 100 changed, one removed")

    results = draw(charts, tmp_path)
    assert len(results) == len(charts)
    for name, text, result in zip(names, charts, results, strict=True):
        assert result["ok"] and not result["error"], (name, result)
        declared = len(re.findall(r'^\s*\w+(?:\["|\[/"|\[\["|\(")', text, re.M))
        assert result["nodes"] == declared, (name, result)
        assert result["marks"] == expected_marks(text), (name, result)
    assert sum(results[-1]["marks"].values()) > 10  # the big review has its marks drawn


def test_thousand_node_report_draws_and_filters(tmp_path: Path) -> None:
    """1,000 nodes with 100 workers resized and one removed: dot's picture (groups, changed
    VMs expanded) is drawn, the VMs filter hides the other families, the page is not blank."""
    from selenium.webdriver.common.by import By

    from generator.commands.diff import html_page
    from generator.pipeline import render_environment

    data = big_document(1000, 20)
    write_big(tmp_path / "base", data=data)
    for node in [n for n in data["nodes"] if n["role"] == "worker"][::9][:100]:
        node["vcpu"] = 8
    data["nodes"] = [n for n in data["nodes"] if n["name"] != "worker5"]
    write_big(tmp_path / "head", data=data)
    sides = []
    for side in ("base", "head"):
        rendered = render_environment("env/big", tmp_path / side)
        sides.append(Side(side, None, "big", rendered.tree,
                          topology=graph.build_full(rendered.loaded.model)))
    page = tmp_path / "big.html"
    page.write_text(html_page(build_report(*sides)))
    with chromium(tmp_path / "profile") as driver:
        driver.get(page.as_uri())
        nodes = driver.find_elements(By.CSS_SELECTOR, "#picture svg g.node")
        texts = [n.text for n in nodes]
        assert 100 < len(nodes) < 400  # changed VMs one by one, the rest in groups
        assert any(re.match(r"\d+ x worker", t) for t in texts)
        assert any(t.startswith("worker5 (worker)") for t in texts)  # removed, drawn back
        families = driver.find_elements(By.CSS_SELECTOR, "button[data-filter=family]")
        vms = next(b for b in families if b.text == "VMs and libvirt objects")
        vms.click()
        shown = visible(driver, "[data-family]")
        assert shown and {e.get_attribute("data-family") for e in shown} == {
            vms.get_attribute("data-value")}
        colours, variance = pixel_spread(driver.get_screenshot_as_png())
        assert colours > 20 and variance > 50, (colours, variance)
        assert console_errors(driver) == []
        assert off_machine(requests(driver)) == []
