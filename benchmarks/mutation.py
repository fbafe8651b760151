"""Mutation testing of the modules that hold the product's promises (mutmut).

    uv run python benchmarks/mutation.py                 # every module of [tool.mutmut]
    uv run python benchmarks/mutation.py --module orchestrator.cache --max-children 2

mutmut names a mutated module by its path (``src/orchestrator/memory.py`` is
``orchestrator.memory``) and runs the tests from its copy, ``mutants/``. This workspace keeps
its packages in ``services/*/src`` and ``host-setup/src``, so the run is staged in
``.artifacts/mutation``: the modules under test are copied to ``src/<package>/``, the tests and
the files they read are linked, and ``tests/mutation_imports.py`` imports the mutated copies
under their real names (every other module comes from the installed packages). mutmut records
which tests call each mutated function and runs only those per mutant, fastest first.

The configuration is ``[tool.mutmut]`` in pyproject.toml (``paths_to_mutate`` as staged,
``src/<package>/<module>.py``; ``tests_dir``, the tests of a module named nowhere else).
``[tool.sparkstack.mutation.tests]`` names the tests that state each module's promises:
modules with the same tests share one mutmut run, staged in ``.artifacts/mutation/<module>``
(kept across runs: ``--module`` re-runs one group, and the report covers all),
so the fast in-process tests of a module are not waited behind every test that happens to
call it. The equivalent mutants excluded from the score, each with its reason, are in
``[tool.sparkstack.mutation.equivalent]``. The report (score per
module, surviving mutants) is printed and written to ``benchmarks/mutation-<date>.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from importlib.metadata import version
from pathlib import Path

import tomli_w
from mutmut.__main__ import status_by_exit_code

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".artifacts" / "mutation"
# orchestrator.cache.xǁSingleFlightCacheǁget__mutmut_3 is a mutant of orchestrator.cache
MUTANT = re.compile(r"^(?P<module>.*?)\.x[ǁ_]")


def real_file(staged: str) -> Path:
    """``src/orchestrator/memory.py`` -> the installed package's ``memory.py``."""
    parts = Path(staged).parts[1:]
    spec = importlib.util.find_spec(parts[0])
    if spec is None or spec.origin is None:
        raise SystemExit(f"{parts[0]} is not installed: run `uv sync` first")
    return Path(spec.origin).parent.joinpath(*parts[1:])


def module_of(staged: str) -> str:
    """``src/orchestrator/memory.py`` -> ``orchestrator.memory``."""
    return staged.removeprefix("src/").removesuffix(".py").replace("/", ".")


def groups(modules: list[str], tests: dict[str, list[str]], default: list[str]) -> dict:
    """Modules run against the same tests share one mutmut run: tests -> modules."""
    found: dict[tuple[str, ...], list[str]] = {}
    for staged in modules:
        found.setdefault(tuple(tests.get(module_of(staged), default)), []).append(staged)
    return found


def stage(where: Path, config: dict, modules: list[str], tests: list[str]) -> None:
    (where / "src").mkdir(parents=True)
    for staged in modules:
        target = where / staged
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real_file(staged), target)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    staged_config = {
        "tool": {
            "pytest": root["tool"]["pytest"],
            "mutmut": {**config, "paths_to_mutate": modules, "tests_dir": tests},
        }
    }
    (where / "pyproject.toml").write_text(tomli_w.dumps(staged_config))


def results(live: set[str]) -> dict[str, str]:
    """mutant name -> status, from mutmut's .meta files (of every group's run; a directory
    of a grouping that no longer exists is left out, its results are stale)."""
    found: dict[str, str] = {}
    for meta in STAGE.glob("*/mutants/src/**/*.py.meta"):
        if meta.relative_to(STAGE).parts[0] not in live:
            continue
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            found[name] = status_by_exit_code[code]
    return found


def report(
    found: dict[str, str], equivalent: dict[str, str], started: dt.datetime, live: set[str]
) -> str:
    by_module: dict[str, Counter[str]] = {}
    for name, status in found.items():
        m = MUTANT.match(name)
        module = m.group("module") if m else name
        status = "equivalent" if name in equivalent else status
        by_module.setdefault(module, Counter())[status] += 1
    minutes = {
        d.name: float((d / "minutes").read_text())
        for d in sorted(STAGE.glob("*/"))
        if d.name in live and (d / "minutes").exists()
    }
    lines = [
        f"# Mutation testing, {started:%Y-%m-%d}",
        "",
        f"`uv run python benchmarks/mutation.py` with mutmut {version('mutmut')} on this "
        f"machine: {sum(minutes.values()):.0f} minutes in all, one mutmut run per group of "
        "modules with the same tests ("
        + ", ".join(f"{name} {m:.1f}" for name, m in minutes.items())
        + " minutes).",
        "",
        "| module | mutants | killed | survived | no test | timeout | equivalent | not run "
        "| score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    total = Counter[str]()
    for module, counts in sorted(by_module.items()):
        total += counts
        lines.append(row(module, counts))
    lines.append(row("**all**", total))
    lines += [
        "",
        "Score: killed (and timed out) of the mutants that ran, less the equivalent ones "
        '("not run": the run was stopped before them). Equivalent mutants (no test can '
        "tell them apart from the original) and why:",
        "",
        *(f"- `{name}`: {why}" for name, why in sorted(equivalent.items())),
        "",
        "Surviving mutants (`mutmut show <name>` in its .artifacts/mutation/<module> shows "
        "the change):",
        "",
        *(
            f"- `{name}` ({status})"
            for name, status in sorted(found.items())
            if status in ("survived", "no tests") and name not in equivalent
        ),
    ]
    return "\n".join(lines) + "\n"


def row(module: str, c: Counter[str]) -> str:
    considered = sum(c.values()) - c["equivalent"] - c["skipped"] - c["not checked"]
    caught = c["killed"] + c["timeout"] + c["caught by type check"] + c["segfault"]
    score = f"{caught / considered:.1%}" if considered else "-"
    return (
        f"| {module} | {sum(c.values())} | {c['killed']} | {c['survived']} | {c['no tests']} "
        f"| {c['timeout']} | {c['equivalent']} | {c['not checked']} | {score} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", action="append", help="only these (e.g. orchestrator.cache)")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--no-write", action="store_true", help="print the report only")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="report the last run's results (.artifacts/mutation) without running anything",
    )
    args = ap.parse_args()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    config = dict(pyproject["tool"]["mutmut"])
    ours = pyproject["tool"]["sparkstack"]["mutation"]
    equivalent, tests = ours["equivalent"], ours["tests"]
    modules = list(config.pop("paths_to_mutate"))
    default_tests = list(config.pop("tests_dir"))
    # each group's directory is named after its first module
    live = {module_of(g[0]) for g in groups(modules, tests, default_tests).values()}
    if args.module:
        wanted = {m.replace(".", "/") + ".py" for m in args.module}
        modules = [m for m in modules if m.removeprefix("src/") in wanted]
        if not modules:
            raise SystemExit(f"none of {args.module} is in [tool.mutmut] paths_to_mutate")
    started = dt.datetime.now()
    if args.report_only:
        text = report(results(live), equivalent, started, live)
        print(text)
        return
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # its console script: `python -m mutmut` would import mutmut.__main__ twice
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    cmd = [mutmut, "run", "--max-children", str(args.max_children)]
    for group_tests, group in groups(modules, tests, default_tests).items():
        # one directory per group, named after its first module: a later run of other
        # modules keeps this one's results, and the report covers every group run so far
        where = STAGE / module_of(group[0])
        if where.exists():
            shutil.rmtree(where)
        stage(where, config, group, list(group_tests))
        began = dt.datetime.now()
        print(f"== {', '.join(map(module_of, group))} against {len(group_tests)} test path(s)")
        subprocess.run(cmd, cwd=where, env=env, check=False)
        minutes = (dt.datetime.now() - began).total_seconds() / 60
        (where / "minutes").write_text(f"{minutes:.2f}")
        print(f"== {minutes:.1f} minutes")
    text = report(results(live), equivalent, started, live)
    print(text)
    if not args.no_write:
        out = ROOT / "benchmarks" / f"mutation-{started:%Y-%m-%d}.md"
        out.write_text(text)
        print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
