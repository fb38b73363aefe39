"""Plan rendering: Terraform-like text for people, a JSON document for machines. Pure."""

from __future__ import annotations

from typing import Any

from generator.reconcile.base import (
    SYMBOL,
    WAVE_DOMAINS,
    WAVE_HOSTS,
    WAVE_IMAGES,
    WAVE_INFRA,
    WAVE_INSTALLER_ASSETS,
    WAVE_INSTALLER_GATES,
    WAVE_KUBERNETES,
    WAVE_MIRROR,
    WAVE_SERVICES,
    WAVE_VOLUMES,
    Action,
)
from generator.reconcile.plan import Plan, Settings

WAVE_TITLES = {WAVE_INFRA: "networks and pools", WAVE_IMAGES: "base images",
               WAVE_HOSTS: "service hosts", WAVE_MIRROR: "mirror registry",
               WAVE_SERVICES: "boot services",
               WAVE_VOLUMES: "volumes", WAVE_DOMAINS: "domains",
               WAVE_KUBERNETES: "Kubernetes objects", WAVE_INSTALLER_ASSETS: "installer assets",
               WAVE_INSTALLER_GATES: "installer gates"}
_SIGN = {"add": "+", "remove": "-", "change": "~"}


def summary_line(plan: Plan) -> str:
    adopt = f", {plan.count('adopt')} to adopt" if plan.count("adopt") else ""
    line = (f"Plan: {plan.count('create')} to add, {plan.count('update')} to change, "
            f"{plan.count('replace')} to replace, {plan.count('delete')} to destroy{adopt}.")
    if plan.skipped:
        line += f" Not looked at: {', '.join(plan.skipped)}."
    return line


def wave_title(action: Action) -> str:
    if action.op == "delete":
        return "Prune (reverse order)"
    return f"Wave {action.wave}: {WAVE_TITLES.get(action.wave, 'other')}"


def action_line(action: Action, settings: Settings | None = None) -> str:
    """`-/+ libvirt domain hv1/master0 (forced by os.machine)` plus notes and refusals."""
    text = f"{SYMBOL[action.op]:>3} {action.provider} {action.kind} {action.name}"
    extras = []
    if action.forcing_field:
        extras.append(f"forced by {action.forcing_field}")
    if action.note:
        extras.append(action.note)
    if extras:
        text += f"  ({'; '.join(extras)})"
    if action.op in ("delete", "replace") and action.protected:
        text += "  [protected: refused]"
    elif action.destructive and settings is not None and not settings.allow_destroy:
        text += "  [destructive: needs --allow-destroy]"
    return text


def change_lines(action: Action, verbose: bool) -> list[str]:
    if action.op == "create" and not verbose:
        return []
    rows = []
    for item in action.changes:
        if item.op == "change":
            rows.append(f"      ~ {item.path}: {item.old} -> {item.new}")
        else:
            value = item.new if item.op == "add" else item.old
            rows.append(f"      {_SIGN[item.op]} {item.path}: {value}")
    return rows


def format_text(plan: Plan, settings: Settings | None = None, verbose: bool = False) -> str:
    """The whole plan, grouped in waves, ending with the summary line."""
    source = "locked render" if plan.locked else "unlocked render (no lock/<env>.lock)"
    out = [f"gen plan for {plan.env} ({source}, tree {plan.tree_hash})"]
    title = None
    for action in plan.actions:
        if wave_title(action) != title:
            title = wave_title(action)
            out += ["", title]
        out.append(action_line(action, settings))
        out += change_lines(action, verbose)
    if plan.notices or plan.conflicts:
        out.append("")
    out += [f"note: {notice}" for notice in plan.notices]
    out += [f"conflict: {conflict}" for conflict in plan.conflicts]
    out += ["", summary_line(plan) if plan.actions or plan.skipped else
            "No changes. Live state matches the rendered tree."]
    return "\n".join(out)


def to_json(plan: Plan, settings: Settings | None = None) -> dict[str, Any]:
    """The plan as plain data (no payloads: they may hold whole XML definitions)."""
    refused = {a.key for a in plan.refused(settings)} if settings else set()
    return {
        "environment": plan.env, "treeHash": plan.tree_hash, "locked": plan.locked,
        "summary": {"add": plan.count("create"), "change": plan.count("update"),
                    "replace": plan.count("replace"), "destroy": plan.count("delete"),
                    # only when there is something to adopt (`plan --adopt`)
                    **({"adopt": plan.count("adopt")} if plan.count("adopt") else {})},
        "actions": [_action_json(a, a.key in refused) for a in plan.actions],
        "notices": list(plan.notices), "conflicts": list(plan.conflicts),
        "complete": plan.complete, "skipped": list(plan.skipped),
    }


def _action_json(action: Action, refused: bool) -> dict[str, Any]:
    return {"op": action.op, "symbol": SYMBOL[action.op], "provider": action.provider,
            "kind": action.kind, "name": action.name, "wave": action.wave,
            "order": action.order, "forcingField": action.forcing_field,
            "destructive": action.destructive, "protected": action.protected,
            "refused": refused, "note": action.note,
            "changes": [{"op": c.op, "path": c.path, "old": c.old, "new": c.new}
                        for c in action.changes]}
