#!/usr/bin/env python3
"""Post or update gen's diff notes on a GitLab merge request (one note per part).

Usage: gen-mr-note.py DIR ENV [REPORT_URL]. Reads DIR/gen-diff-ENV-*.md (from `gen diff
--format markdown --out DIR`), finds the notes that start with `<!-- gen-diff:ENV -->`,
updates them in part order, adds missing ones and deletes extra ones. REPORT_URL, the
job artifact of `gen diff --format html`, is linked at the end of the first part. Needs
GEN_GITLAB_TOKEN (api scope) and GitLab's CI_API_V4_URL, CI_PROJECT_ID and
CI_MERGE_REQUEST_IID.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request
from pathlib import Path


def api(method: str, path: str, body: dict[str, str] | None = None) -> object:
    url = f"{os.environ['CI_API_V4_URL']}/projects/{os.environ['CI_PROJECT_ID']}{path}"
    request = urllib.request.Request(url, method=method,
                                     data=json.dumps(body).encode() if body else None,
                                     headers={"PRIVATE-TOKEN": os.environ["GEN_GITLAB_TOKEN"],
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        text = reply.read()
    return json.loads(text) if text else None


def part_of(body: str) -> int:
    found = re.search(r"<!-- gen-diff-part:(\d+)/", body)
    return int(found.group(1)) if found else 0


def with_report_link(parts: list[str], url: str) -> list[str]:
    if not url or not parts:
        return parts
    link = (f"\n[Browsable report]({url}) (HTML artifact of this job: picture, filters by "
            "family and host, side-by-side diffs)\n")
    return [parts[0] + link, *parts[1:]]


def main(directory: str, env: str, report_url: str = "") -> None:
    marker = f"<!-- gen-diff:{env} -->"
    parts = [p.read_text() for p in sorted(Path(directory).glob(f"gen-diff-{env}-*.md"))]
    parts = with_report_link(parts, report_url)
    notes_path = f"/merge_requests/{os.environ['CI_MERGE_REQUEST_IID']}/notes"
    notes, page = [], 1
    while batch := api("GET", f"{notes_path}?per_page=100&page={page}"):
        notes += batch  # type: ignore[operator]
        page += 1
    ours = sorted((n for n in notes if n.get("body", "").startswith(marker)),
                  key=lambda n: part_of(n["body"]))
    for index, body in enumerate(parts):
        if index < len(ours):
            if ours[index]["body"] != body:
                api("PUT", f"{notes_path}/{ours[index]['id']}", {"body": body})
        else:
            api("POST", notes_path, {"body": body})
    for stale in ours[len(parts):]:
        api("DELETE", f"{notes_path}/{stale['id']}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
