"""Bash parsing: functions in both syntaxes, sourced files, commands called, chunks."""

from __future__ import annotations

from code_preprocessor.model import FileResult
from parsing_support import assert_chunks_tile, parse_sample

PATH = "scripts/deploy.sh"


def parse(budget: int = 1500) -> tuple[FileResult, bytes]:
    return parse_sample("deploy.sh", PATH, "bash", budget)


def test_bash_symbols() -> None:
    r, _ = parse()
    assert {(s.kind, s.qualname) for s in r.symbols} == {
        ("function", "log"),
        ("function", "die"),
        ("function", "check_dependencies"),
        ("function", "build_release"),
        ("function", "upload"),
        ("function", "upload.retry"),  # defined inside upload
        ("function", "main"),
    }
    by = {s.qualname: s for s in r.symbols}
    assert by["upload.retry"].parent == "upload"
    assert by["upload.retry"].name == "retry"
    assert by["log"].parent is None
    assert by["log"].doc == "Prints a timestamped message to stderr."
    assert by["log"].signature == "log()"
    assert by["build_release"].doc == "Builds the release archive and prints its path."
    assert by["build_release"].signature == "function build_release"
    assert by["upload"].signature == "function upload()"
    assert (by["upload"].start_line, by["upload"].end_line) == (41, 53)
    assert by["check_dependencies"].doc == ""


def test_bash_relations() -> None:
    r, _ = parse()
    rel = {(x.kind, x.source, x.target) for x in r.relations}
    imports = {t for k, _, t in rel if k == "imports"}
    assert imports == {'$(dirname "$0")/lib/common.sh', "./config/defaults.env"}
    assert ("contains", PATH, "upload") in rel
    assert ("contains", "upload", "upload.retry") in rel
    assert ("calls", "die", "log") in rel
    assert ("calls", "main", "build_release") in rel  # inside $(...)
    assert ("calls", "upload", "retry") in rel
    assert ("calls", "upload", "tee") in rel  # in a pipeline
    assert ("calls", "upload.retry", "sleep") in rel
    assert ("calls", "log", "date") in rel
    assert ("calls", PATH, "main") in rel
    assert not any(k in ("extends", "implements") for k, _, _ in rel)
    calls = [(x.source, x.target) for x in r.relations if x.kind == "calls"]
    assert len(calls) == len(set(calls))


def test_bash_chunks_tile_the_file() -> None:
    r, source = parse()
    assert_chunks_tile(r, source, 1500)


def test_bash_small_budget_splits_functions() -> None:
    r, source = parse(budget=50)
    assert_chunks_tile(r, source, 50)
    retry = next(c for c in r.chunks if "upload.retry" in c.symbols)
    assert retry.scope == "upload"
    assert retry.text.lstrip().startswith("retry() {")
    assert [c.scope for c in r.chunks].count("upload") >= 3
