"""Rules of the tools gen hands its output to, for the version the environment pins.

`openshift-install` and `kubeadm` refuse some inputs themselves, but only at converge, long
after review. These modules restate those refusals (openshift.py: the installer's
install-config validation; kubeadm.py: kubeadm's ClusterConfiguration validation) so that
`gen validate` reports them with file and line. Pure: a schema-valid Document in, Problems out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from generator.errors import Problem
from generator.loader import Document, FieldPath


class Report:
    """Problems against one document, located by field path."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.problems: list[Problem] = []

    def error(self, path: FieldPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(message, self.doc.locate(path), hint))

    def warn(self, path: FieldPath, message: str, hint: str = "") -> None:
        self.problems.append(Problem(message, self.doc.locate(path), hint, warning=True))

    @property
    def cluster(self) -> dict[str, Any]:
        cluster: dict[str, Any] = self.data.get("cluster", {})
        return cluster


def version_problems(doc: Document) -> list[Problem]:
    """Every tool rule that applies to the document's flavour and pinned version."""
    from generator.rules import kubeadm, openshift

    report = Report(doc)
    checks: tuple[Callable[[Report], None], ...] = (*openshift.CHECKS, *kubeadm.CHECKS)
    for check in checks:
        check(report)
    return report.problems
