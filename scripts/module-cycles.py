#!/usr/bin/env python3
"""Measures src/: the longest functions, the
`too_many_arguments` allows, and module import cycles (the rule: a module never imports
from a module that imports it). A quick text scan, not a parser: comments and strings
are blanked first.

Usage: scripts/module-cycles.py [SRC_DIR] [-v]   (-v lists every edge)
Nodes: top-level modules under src/, and the submodules of restore/, pitr/, oplog/.
An edge A -> B: a file of A names `crate::B...` (or `super::B` in a submodule).
"""
import os, re, sys
from collections import defaultdict

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"
SPLIT = {"restore", "pitr", "oplog"}

def strip(text):
    """Blanks comments, strings and char literals (keeps newlines)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i); j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i); j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == "r" and re.match(r'r#*"', text[i:i+10]) and not (i and (text[i-1].isalnum() or text[i-1]=="_")):
            m = re.match(r'r(#*)"', text[i:]); end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0))); j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append(" " * len(m.group(0))); i += len(m.group(0))
            else:
                out.append(c); i += 1
        else:
            out.append(c); i += 1
    return "".join(out)

def rust_files():
    for root, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".rs"):
                yield os.path.join(root, f)

def node_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel[0] in ("lib", "main"):
        return rel[0]
    if rel[0] in SPLIT and len(rel) > 1:
        return rel[0] + "::" + rel[1]
    return rel[0]

def submodules(top):
    d = os.path.join(SRC, top)
    if not os.path.isdir(d):
        return set()
    return {f[:-3] for f in os.listdir(d) if f.endswith(".rs") and f != "mod.rs"} | {f for f in os.listdir(d) if os.path.isdir(os.path.join(d, f))}

def functions(path):
    text = strip(open(path).read())
    lines = text.split("\n")
    found = []
    for m in re.finditer(r"\bfn\s+([A-Za-z_][A-Za-z0-9_]*)", text):
        # find the body's opening brace (skip `;` declarations)
        depth, j = 0, m.end()
        while j < len(text) and text[j] not in "{;":
            j += 1
        if j >= len(text) or text[j] == ";":
            continue
        k, depth = j, 0
        while k < len(text):
            if text[k] == "{": depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0: break
            k += 1
        start = text.count("\n", 0, m.start()) + 1
        end = text.count("\n", 0, k) + 1
        found.append((end - start + 1, path, start, m.group(1)))
    return found

def edges():
    graph = defaultdict(set)
    subs = {top: submodules(top) for top in SPLIT}
    for path in rust_files():
        a = node_of(path)
        text = strip(open(path).read())
        for m in re.finditer(r"\bcrate::([a-z_][a-z0-9_]*)(?:::([a-z_][a-z0-9_]*))?", text):
            top, sub = m.group(1), m.group(2)
            b = top + "::" + sub if top in SPLIT and sub in subs[top] else top
            if b != a:
                graph[a].add(b)
        if "::" in a:
            parent = a.split("::")[0]
            for m in re.finditer(r"\bsuper::([a-z_][a-z0-9_]*|\{[^}]*\}|[A-Z][A-Za-z0-9_]*)", text):
                names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", m.group(1))
                for name in names:
                    b = parent + "::" + name if name in subs[parent] else parent
                    if b != a:
                        graph[a].add(b)
        elif a in SPLIT:  # mod.rs naming its own submodules (`plan::Plan`, `self::x`)
            for name in subs[a]:
                if re.search(r"(?<![:\w])" + name + r"::", text) or re.search(r"\buse\s+" + name + r"\b", text):
                    graph[a].add(a + "::" + name)
    return graph

def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    nodes = set(graph) | {b for bs in graph.values() for b in bs}
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            if len(comp) > 1: out.append(sorted(comp))
    for v in sorted(nodes):
        if v not in index: visit(v)
    return out

if __name__ == "__main__":
    funcs = [f for p in rust_files() for f in functions(p)]
    funcs.sort(reverse=True)
    print("== longest functions in src/ (lines, file:line, name)")
    for n, p, l, name in funcs[:8]:
        print(f"{n:5}  {os.path.relpath(p, SRC)}:{l}  {name}")
    print(f"functions over 80 lines: {sum(1 for f in funcs if f[0] > 80)}")
    allows = [(p, i + 1) for p in rust_files() for i, line in enumerate(open(p)) if "too_many_arguments" in line]
    print(f"== too_many_arguments allows: {len(allows)}")
    for p, l in sorted(allows):
        print(f"   {os.path.relpath(p, SRC)}:{l}")
    g = edges()
    pairs = sorted({tuple(sorted((a, b))) for a in g for b in g[a] if a in g.get(b, ())})
    print(f"== module pairs importing each other: {len(pairs)}")
    for a, b in pairs:
        print(f"   {a} <-> {b}")
    cycles = sccs(g)
    print(f"== import cycles (strongly connected groups): {len(cycles)}")
    for c in cycles:
        print("   " + " , ".join(c))
    top = defaultdict(set)
    for a in g:
        for b in g[a]:
            if a.split("::")[0] != b.split("::")[0]:
                top[a.split("::")[0]].add(b.split("::")[0])
    pairs = sorted({tuple(sorted((a, b))) for a in top for b in top[a] if a in top.get(b, ())})
    print(f"== top-level modules importing each other: {len(pairs)}")
    for a, b in pairs:
        print(f"   {a} <-> {b}")
    cycles = sccs(top)
    print(f"== top-level import cycles: {len(cycles)}")
    for c in cycles:
        print("   " + " , ".join(c))
    if "-v" in sys.argv:
        print("== edges")
        for a in sorted(g):
            print(f"   {a} -> {', '.join(sorted(g[a]))}")
