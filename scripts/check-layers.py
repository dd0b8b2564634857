#!/usr/bin/env python3
"""Check that Weir's crates are layered: each depends only on crates below
it, and no crate's top-level modules import each other in a circle.

The order, bottom first, is LAYERS below (docs/architecture.md explains
it). A crate of the workspace named `weir-*` or `weir` must appear in it.
Only normal and build dependencies count: a test may reach anything.

Inside a crate, module A depends on module B when A's code (tests left
out) names `crate::B`, directly or in a `use crate::{...}` group, or
reaches B through `super::` (`super::B` from a file of A's folder). A
cycle among top-level modules is reported with its members.

Usage: scripts/check-layers.py [--modules-only | --crates-only]
Exit status 1 when a rule is broken, with every breach listed.
"""

import json
import os
import re
import subprocess
import sys

# Bottom first. A crate may depend on any crate before it.
LAYERS = [
    "weir-core",
    "weir-admin-api",
    "weir-select",
    "weir-config",
    "weir-state",
    "weir-observe",
    "weir-plugins",
    "weir-proxy",
    "weir-ai",
    "weir-gateway",
    "weir-admin",
    "weir",
]


def workspace():
    out = subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def crate_breaches(meta):
    problems = []
    packages = {p["name"]: p for p in meta["packages"]}
    ours = [n for n in packages if n == "weir" or n.startswith("weir-")]
    # The SDK, the test emulator, the test support and the benches are not
    # layers of the gateway.
    ours = [n for n in ours if n not in ("weir-sdk", "weir-emulator", "weir-testing", "weir-benches", "weir-bare-proxy")]
    for name in ours:
        if name not in LAYERS:
            problems.append(f"{name}: not in LAYERS (scripts/check-layers.py)")
    for name in ours:
        if name not in LAYERS:
            continue
        rank = LAYERS.index(name)
        for dep in packages[name]["dependencies"]:
            if dep["kind"] == "dev" or dep["name"] not in LAYERS:
                continue
            if LAYERS.index(dep["name"]) >= rank:
                problems.append(f"{name} depends on {dep['name']}, which is not below it")
    return problems


USE_GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\};", re.S)
CRATE_PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def strip(source):
    """Source without comments, string contents and `#[cfg(test)]` items."""
    source = re.sub(r"//[^\n]*", "", source)
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    source = re.sub(r'"(?:\\.|[^"\\])*"', '""', source)
    cut = source.find("#[cfg(test)]")
    return source if cut < 0 else source[:cut]


def module_path(src_dir, path):
    """The module path of a source file: `a/b.rs` and `a/b/mod.rs` are
    `["a", "b"]`; the crate root is `[]`."""
    parts = os.path.relpath(path, src_dir)[:-3].split(os.sep)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return parts


SUPER_PATH = re.compile(r"\b((?:super::)+)([a-z_][a-z0-9_]*)")


def super_targets(me, code):
    """The top-level modules that `super::` paths in a file at module path
    `me` name (`super::x` in `a/b.rs` is `a::x`; in `a/mod.rs`, `x`)."""
    targets = set()
    for supers, first in SUPER_PATH.findall(code):
        up = supers.count("super::")
        base = me[: len(me) - up] if up <= len(me) else None
        if base is None:
            continue
        resolved = base + [first]
        targets.add(resolved[0])
    return targets


def module_cycles(name, src_dir):
    edges = {}
    for folder, _, files in os.walk(src_dir):
        for file in files:
            if not file.endswith(".rs"):
                continue
            path = os.path.join(folder, file)
            mod_path = module_path(src_dir, path)
            if not mod_path:
                continue
            me = mod_path[0]
            with open(path, encoding="utf-8") as f:
                code = strip(f.read())
            targets = set(CRATE_PATH.findall(code)) | super_targets(mod_path, code)
            for group in USE_GROUP.findall(code):
                for item in re.split(r",(?![^{]*\})", group):
                    item = item.strip()
                    if item:
                        targets.add(re.split(r"[:{\s]", item)[0])
            edges.setdefault(me, set()).update(t for t in targets if t != me and t != "self")
    # Tarjan's strongly connected components.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges and w not in index:
                continue  # not a module of this crate (a re-exported name)
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [f"{name}: modules import each other in a circle: {' ↔ '.join(c)}" for c in cycles]


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    meta = workspace()
    problems = []
    if mode != "--modules-only":
        problems += crate_breaches(meta)
    if mode != "--crates-only":
        for package in meta["packages"]:
            name = package["name"]
            if name not in LAYERS:
                continue
            # A library and a binary in one folder are one tree of modules.
            src_dirs = {
                os.path.dirname(target["src_path"])
                for target in package["targets"]
                if "lib" in target["kind"] or "bin" in target["kind"]
            }
            for src_dir in sorted(src_dirs):
                problems += module_cycles(name, src_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} layering problem(s)", file=sys.stderr)
        return 1
    print(f"layers hold: {', '.join(LAYERS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
