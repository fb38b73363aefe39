"""kubernetes provider against a real cluster (marker `live`): runs when KUBECONFIG is set.

The cycle is the one the kmock tests run, on a small tree of its own in a throw-away
namespace (`gen-live-<random>`, owner labels of a throw-away environment), so it can run on
any cluster without touching what is there: plan on empty -> creates in order; converge;
re-plan -> zero changes (the real proof of the essence rules: server defaults, managedFields,
Secret data); drift (replicas scaled, an owned object deleted, a foreign object added) is
reported and repaired; an object dropped from the render is deleted only with --prune; a
field dropped from the render is removed (managedFields); the foreign object is untouched.
The namespace is deleted at the end.

The same cycle also runs here against kmock (`test_cycle_on_kmock`), minus the steps kmock
has no semantics for (server-side apply's field ownership, Secret stringData -> data).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from generator.families.kubernetes import owner_labels
from generator.reconcile import kubernetes as k
from generator.reconcile.plan import Desired, build_plan
from tests.test_reconcile_kubernetes import (
    Kube,
    converge,
    handed_over,
    kube,  # noqa: F401  (fixture)
    lab_b,
    names,
    settings,
)


def small_objects(env: Any, namespace: str, *, with_secret: bool, service: bool = True,
                  tier_label: bool = True) -> list[dict[str, Any]]:
    labels = owner_labels(env)
    app = {"app": "hello", **({"tier": "web"} if tier_label else {})}
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace,
                                                               "labels": labels}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "hello", "namespace": namespace, "labels": labels},
         "data": {"greeting": "hello"}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "hello", "namespace": namespace, "labels": {**app, **labels}},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "hello"}},
                  "template": {"metadata": {"labels": {"app": "hello"}}, "spec": {
                      "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.9",
                                      "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                      "resources": {"requests": {"cpu": "10m",
                                                                 "memory": "16Mi"}}}]}}}},
    ]
    if service:
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "hello", "namespace": namespace, "labels": labels},
                     "spec": {"selector": {"app": "hello"},
                              "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    if with_secret:
        objs.append({"apiVersion": "v1", "kind": "Secret",
                     "metadata": {"name": "hello", "namespace": namespace, "labels": labels},
                     "type": "Opaque", "stringData": {"token": "not-a-real-secret"}})
    return objs


def cycle(kubeconfig: str, state: Path, real: bool) -> None:
    base = lab_b()
    suffix = uuid.uuid4().hex[:8]
    env = replace(base.env, name=f"gen-live-{suffix}")
    namespace = f"gen-live-{suffix}"
    desired = handed_over(Desired(env, {}, "live", False),
                          small_objects(env, namespace, with_secret=real))
    config = settings(kubeconfig)
    api = k.connect(kubeconfig, None)
    ns_path = f"/api/v1/namespaces/{namespace}"
    try:
        plan = build_plan(desired, config)
        assert names(plan)[0] == ("create", "Namespace", namespace)
        assert plan.count("create") == len(plan.actions) == (5 if real else 4)
        converge(desired, config, state)
        assert build_plan(desired, config).empty, "a converge right after a converge"

        deploy = f"/apis/apps/v1/namespaces/{namespace}/deployments/hello"
        api.request("PATCH", deploy, body={"spec": {"replicas": 1}},
                    content_type="application/merge-patch+json")
        api.request("DELETE", f"{ns_path}/configmaps/hello")
        foreign = {"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "foreign", "namespace": namespace}, "data": {"a": "b"}}
        api.request("POST", f"{ns_path}/configmaps", body=foreign)
        plan = build_plan(desired, config)
        assert sorted(names(plan)) == [("create", "ConfigMap", f"{namespace}/hello"),
                                       ("update", "Deployment", f"{namespace}/hello")]
        converge(desired, config, state)
        assert api.request("GET", deploy)["spec"]["replicas"] == 2

        smaller = handed_over(desired, small_objects(env, namespace, with_secret=real,
                                                     service=False, tier_label=not real))
        plan = build_plan(smaller, config)
        expected = [("update", "Deployment", f"{namespace}/hello")] if real else []
        assert names(plan) == expected
        if real:  # gen owned the label (managedFields), so dropping it is a removal
            assert [(c.op, c.path) for c in plan.actions[0].changes] == [
                ("remove", "metadata.labels.tier")]
        pruning = settings(kubeconfig, prune=True)
        plan = build_plan(smaller, pruning)
        assert names(plan)[-1] == ("delete", "Service", f"{namespace}/hello")
        converge(smaller, pruning, state)
        assert build_plan(smaller, pruning).empty
        if real:
            labels = api.request("GET", deploy)["metadata"]["labels"]
            assert "tier" not in labels
        assert api.request("GET", f"{ns_path}/configmaps/foreign")["data"] == {"a": "b"}
    finally:
        api.delete(k.Resource("v1", "Namespace", "namespaces", False), "", namespace)


@pytest.mark.live
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="KUBECONFIG is not set")
def test_cycle_on_a_real_cluster(tmp_path: Path) -> None:
    cycle(os.environ["KUBECONFIG"].split(os.pathsep)[0], tmp_path / "state", real=True)


def test_cycle_on_kmock(kube: Kube, tmp_path: Path) -> None:  # noqa: F811
    cycle(str(kube.kubeconfig), tmp_path / "state", real=False)
