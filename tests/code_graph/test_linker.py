"""Cross-file edges from real parses: what resolves, and what must not become an edge."""

from __future__ import annotations

from code_preprocessor.graph import link_info
from code_preprocessor.preprocess import Preprocessor
from ingest_worker.linker import Codebase, FileInfo


def edges(files: dict[str, str]) -> set[tuple[str, str, str]]:
    parser = Preprocessor()
    infos = []
    for path, text in files.items():
        result = parser.process(path, text.encode())
        assert result.status == "ok", (path, result.reason)
        infos.append(FileInfo.of(path, "sha-" + path, link_info(result)))
    codebase = Codebase(infos)
    out = set()
    for info in infos:
        for (source, target), kinds in codebase.edges_of(info).pairs.items():
            out |= {(kind, source, target) for kind in kinds}
    return out


PYTHON = {
    "pkg/__init__.py": '"""The package."""\n',
    "pkg/base.py": (
        "class Base:\n"
        "    def save(self):\n"
        "        return persist(self)\n\n\n"
        "def persist(x):\n"
        "    return x\n"
    ),
    "pkg/util.py": "def clean(x):\n    return helper(x)\n\n\ndef helper(x):\n    return x\n",
    "pkg/models.py": (
        "import json\n"
        "import pkg.util as u\n"
        "from .base import Base\n"
        "from . import util\n\n\n"
        "class User(Base):\n"
        "    def store(self):\n"
        "        self.save()\n"
        "        u.clean(self)\n"
        "        util.helper(1)\n"
        "        print('x')\n"
        "        json.dumps(1)\n"
        "        self.missing()\n"
        "        Unknown.thing()\n"
    ),
}


def test_python_calls_imports_and_bases_resolve_across_files() -> None:
    found = edges(PYTHON)
    assert found == {
        ("imports", "pkg/models.py", "pkg/util.py"),
        ("imports", "pkg/models.py", "pkg/base.py"),
        ("imports", "pkg/models.py", "pkg/__init__.py"),
        ("extends", "pkg/models.py:User", "pkg/base.py:Base"),
        # through the class's in-codebase base, in another file
        ("calls", "pkg/models.py:User.store", "pkg/base.py:Base.save"),
        ("calls", "pkg/models.py:User.store", "pkg/util.py:clean"),
        ("calls", "pkg/models.py:User.store", "pkg/util.py:helper"),
        ("calls", "pkg/util.py:clean", "pkg/util.py:helper"),
        ("calls", "pkg/base.py:Base.save", "pkg/base.py:persist"),
    }
    # print, json.dumps, self.missing and Unknown.thing made no edge to a made-up entity
    targets = {t for _, _, t in found}
    assert not any(name in t for t in targets for name in ("print", "json", "missing", "Unknown"))


def test_an_ambiguous_name_makes_no_edge() -> None:
    files = {
        "a/helpers.py": "def tool():\n    return 1\n",
        "b/helpers.py": "def tool():\n    return 2\n",
        "main.py": "import helpers\n\n\ndef run():\n    return helpers.tool()\n",
    }
    assert edges(files) == set()  # two modules called helpers: neither is guessed


def test_typescript_relative_imports_resolve() -> None:
    files = {
        "web/lib/shapes.ts": (
            "export class Shape {\n  area(): number { return 0; }\n}\n"
            "export function unit(): Shape { return new Shape(); }\n"
        ),
        "web/app.ts": (
            "import { Shape, unit as one } from './lib/shapes';\n"
            "import * as shapes from './lib/shapes';\n"
            "import React from 'react';\n"
            "export class Square extends Shape {\n"
            "  side(): number { return this.area(); }\n"
            "}\n"
            "export function build() { one(); shapes.unit(); React.createElement('x'); }\n"
        ),
    }
    assert edges(files) == {
        ("imports", "web/app.ts", "web/lib/shapes.ts"),
        ("extends", "web/app.ts:Square", "web/lib/shapes.ts:Shape"),
        ("calls", "web/app.ts:Square.side", "web/lib/shapes.ts:Shape.area"),
        ("calls", "web/app.ts:build", "web/lib/shapes.ts:unit"),
        ("calls", "web/lib/shapes.ts:unit", "web/lib/shapes.ts:Shape"),  # new Shape()
    }


def test_go_names_resolve_within_the_package() -> None:
    files = {
        "svc/a.go": "package svc\n\nfunc Serve() int {\n\treturn helper() + other.X()\n}\n",
        "svc/b.go": "package svc\n\nfunc helper() int {\n\treturn 1\n}\n",
        "cmd/main.go": "package main\n\nfunc helper() int {\n\treturn 2\n}\n",
    }
    assert edges(files) == {("calls", "svc/a.go:Serve", "svc/b.go:helper")}


def test_a_pair_two_files_both_point_across_belongs_to_one_links_document() -> None:
    """Circular imports and mutual calls make one undirected edge in LightRAG: exactly one
    file's links carry it, with both directions, so replacing either file's links cannot
    remove the edge the other still needs."""
    files = {
        "a.py": "import b\n\n\ndef ping(n):\n    return b.pong(n - 1)\n",
        "b.py": "import a\n\n\ndef pong(n):\n    return a.ping(n - 1)\n",
    }
    parser = Preprocessor()
    infos = [
        FileInfo.of(p, "sha-" + p, link_info(parser.process(p, t.encode())))
        for p, t in files.items()
    ]
    owned = Codebase(infos).all_edges()
    a_rel = {(r["source"], r["target"]): r for r in owned["a.py"].relations()}
    assert owned["b.py"].relations() == []
    assert set(a_rel) == {("a.py", "b.py"), ("a.py:ping", "b.py:pong")}
    assert a_rel[("a.py:ping", "b.py:pong")]["reverse"] == ["calls"]
    assert owned["a.py"].targets == {"b.py"}


def test_java_members_imports_and_same_package_classes_resolve() -> None:
    files = {
        "src/main/java/com/acme/Base.java": (
            "package com.acme;\n\npublic class Base {\n"
            "    public void save() { persist(); }\n    void persist() {}\n}\n"
        ),
        "src/main/java/com/acme/app/User.java": (
            "package com.acme.app;\n\nimport com.acme.Base;\nimport java.util.List;\n\n"
            "public class User extends Base implements Comparable<User> {\n"
            "    public void store() {\n"
            "        save();\n        this.check();\n        helper();\n"
            "        Util.clean(this);\n        List.of(1);\n        missing();\n"
            "    }\n"
            "    private void check() {}\n    static void helper() {}\n}\n"
        ),
        "src/main/java/com/acme/app/Util.java": (
            "package com.acme.app;\n\npublic class Util {\n    static void clean(Object o) {}\n}\n"
        ),
    }
    base, user, util = (
        f"src/main/java/com/acme/{p}.java" for p in ("Base", "app/User", "app/Util")
    )
    assert edges(files) == {
        ("calls", f"{base}:Base.save", f"{base}:Base.persist"),
        ("imports", user, base),
        ("extends", f"{user}:User", f"{base}:Base"),
        ("calls", f"{user}:User.store", f"{base}:Base.save"),  # inherited, unqualified
        ("calls", f"{user}:User.store", f"{user}:User.check"),
        ("calls", f"{user}:User.store", f"{user}:User.helper"),
        ("calls", f"{user}:User.store", f"{util}:Util.clean"),  # same package
        # java.util.List, Comparable and missing() are not in the codebase: no edge
    }
