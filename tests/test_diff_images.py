"""`gen diff` shows an image moving as `REFERENCE old-digest -> new-digest` (short digests,
the tag the environment asks for in front), in text, JSON (full digests as fields) and
markdown; other lock inputs keep their generic rows."""

from __future__ import annotations

import json

from generator.diff import Side, build_report
from generator.diff.formats import to_json, to_markdown, to_text

OLD = "sha256:" + "0123456789ab" + "c" * 52
NEW = "sha256:" + "fedcba987654" + "d" * 52
TOMCAT = "docker.io/library/tomcat"


def _lock(inputs: dict[str, object]) -> dict[str, object]:
    return {"inputs": {"environment": {"path": "environments/k8s-lab", "narHash": "x"},
                       **inputs}}


def _report(old: dict[str, object], new: dict[str, object]):  # type: ignore[no-untyped-def]
    return build_report(Side("base", "a" * 40, "k8s-lab", lock=_lock(old)),
                        Side("head", "b" * 40, "k8s-lab", lock=_lock(new)))


def test_image_moving_under_the_same_tag_reads_tag_then_short_digests() -> None:
    report = _report({"image/tomcat": {"original": f"{TOMCAT}:9", "locked": f"{TOMCAT}@{OLD}"}},
                     {"image/tomcat": {"original": f"{TOMCAT}:9", "locked": f"{TOMCAT}@{NEW}"}})
    row = f"~ image/tomcat: {TOMCAT}:9 sha256:0123456789ab -> sha256:fedcba987654"
    assert f"  {row}" in to_text(report).splitlines()
    assert row in "".join(to_markdown(report)).splitlines()
    (entry,) = to_json(report)["inputs"]
    assert entry == {"op": "~", "subject": "image/tomcat", "detail": row[len("~ image/tomcat: "):],
                     "image": f"{TOMCAT}:9", "from": OLD, "to": NEW}
    json.dumps(to_json(report))  # still plain JSON


def test_new_tag_names_both_references_and_added_or_removed_images_their_digest() -> None:
    report = _report(
        {"image/tomcat": {"original": f"{TOMCAT}:9", "locked": f"{TOMCAT}@{OLD}"},
         "image/gone": {"original": "quay.io/x/gone:1", "locked": f"quay.io/x/gone@{OLD}"}},
        {"image/tomcat": {"original": f"{TOMCAT}:10", "locked": f"{TOMCAT}@{NEW}"},
         "image/new": {"original": "quay.io/x/new:2", "locked": f"quay.io/x/new@{NEW}"},
         "os/disk": {"original": {"url": "https://x/d.img"},
                     "locked": {"location": "https://x/d.img", "sha256": "11"}}})
    assert [f.line() for f in report.inputs] == [
        "+ image/new: quay.io/x/new:2 sha256:fedcba987654",
        "+ os/disk: location https://x/d.img, sha256 11",
        "- image/gone: quay.io/x/gone:1 sha256:0123456789ab",
        f"~ image/tomcat: {TOMCAT}:9 sha256:0123456789ab -> {TOMCAT}:10 sha256:fedcba987654"]
    moved = to_json(report)["inputs"][-1]
    assert (moved["image"], moved["fromImage"], moved["from"], moved["to"]) == (
        f"{TOMCAT}:10", f"{TOMCAT}:9", OLD, NEW)


def test_a_manifest_running_a_locked_image_names_it_by_tag_and_short_digest() -> None:
    def deployment(digest: str) -> bytes:
        return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
                f"  namespace: default\nspec:\n  template:\n    spec:\n      containers:\n"
                f"      - name: web\n        image: {TOMCAT}@{digest}\n").encode()

    path = "clusters/k8s/kubernetes/apps/web.yaml"
    report = build_report(
        Side("base", "a" * 40, "k8s-lab", tree={path: deployment(OLD)}, lock=_lock(
            {"image/tomcat": {"original": f"{TOMCAT}:9", "locked": f"{TOMCAT}@{OLD}"}})),
        Side("head", "b" * 40, "k8s-lab", tree={path: deployment(NEW)}, lock=_lock(
            {"image/tomcat": {"original": f"{TOMCAT}:9", "locked": f"{TOMCAT}@{NEW}"}})))
    (section,) = report.sections
    assert [f.line() for f in section.findings] == [
        f"~ Deployment default/web: spec.template.spec.containers[0].image: {TOMCAT}:9 "
        f"sha256:0123456789ab -> {TOMCAT}:9 sha256:fedcba987654"]
    assert f"{TOMCAT}@{NEW}" in section.files[0].unified()  # the file diff stays literal
