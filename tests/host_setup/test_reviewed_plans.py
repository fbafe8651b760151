"""The whole plan for a few hosts, as reviewed: every command line `host-setup plan` prints
(and so `apply` runs) on a fresh DGX OS, an x86_64 machine, a host without containerd, a
finished host, one half done, one whose releases were uninstalled by hand, and a reset with
purge, kept in ``plans/``.

The tests beside this one state the rules (what each step does given its facts); these pin
the exact command lines a person reviewed, flag for flag, so no option, path or file content
(its hash) changes without the diff showing up in review. After an intended change:

    SPARKSTACK_UPDATE_PLANS=1 uv run pytest tests/host_setup/test_reviewed_plans.py

and read the diff of ``plans/`` before committing it.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest
from host_setup import checks, render, runner
from host_setup.checks import Settings
from host_setup.steps import build_steps, build_worker_steps
from host_states import finished, half_done, releases_lost
from scripted_host import ScriptedHost

PLANS = Path(__file__).parent / "plans"
# the checkout's path is not part of a plan
SECRET_SCRIPT = render.find_ensure_secret() or render.ENSURE_SECRET_SCRIPT


def plan_of(host: ScriptedHost) -> list[str]:
    lines: list[str] = []
    runner.plan(host, build_steps(Settings()), lines.append)
    return lines


def reset_with_purge() -> list[str]:
    lines: list[str] = []
    runner.reset(finished(), Settings(), purge=True, dry_run=True, out=lines.append)
    return lines


CASES: dict[str, Callable[[], list[str]]] = {
    "fresh-dgx-os": lambda: plan_of(ScriptedHost()),
    "x86_64": lambda: plan_of(ScriptedHost(arch="x86_64", containerd="1.7.28")),
    "no-containerd": lambda: plan_of(ScriptedHost(containerd=None)),
    "finished": lambda: plan_of(finished()),
    "half-done": lambda: plan_of(half_done()),
    "releases-lost": lambda: plan_of(releases_lost()),
    "reset-purge": reset_with_purge,
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_plan_is_the_reviewed_one(case: str) -> None:
    text = "\n".join(CASES[case]()) + "\n"
    text = text.replace(SECRET_SCRIPT, "<checkout>/" + render.ENSURE_SECRET_SCRIPT)
    path = PLANS / f"{case}.txt"
    if os.environ.get("SPARKSTACK_UPDATE_PLANS") == "1":
        PLANS.mkdir(exist_ok=True)
        path.write_text(text)
    reviewed = path.read_text()
    diff = "".join(
        difflib.unified_diff(
            reviewed.splitlines(keepends=True),
            text.splitlines(keepends=True),
            f"reviewed {path.name}",
            "planned now",
        )
    )
    assert text == reviewed, (
        f"the plan changed (review it, then SPARKSTACK_UPDATE_PLANS=1 to keep it):\n{diff}"
    )


def test_every_host_state_plans_some_work_and_a_finished_host_none() -> None:
    """The reviewed files are not empty shells: each state has work to do, a finished host
    has none, and a reset removes the cluster's files."""
    for case in ("fresh-dgx-os", "x86_64", "no-containerd"):
        assert sum(" change " in line for line in CASES[case]()) >= 10, case
    assert all(" change " not in line for line in CASES["finished"]())
    assert any("kubeadm reset --force" in line for line in CASES["reset-purge"]())


# -- a second Spark joining the first one's cluster ---------------------------------------


def two_sparks() -> tuple[ScriptedHost, ScriptedHost]:
    control = finished()
    worker = ScriptedHost(name="spark-2", cluster=control.cluster)
    return control, worker


def test_a_second_spark_joins_with_a_token_it_never_keeps() -> None:
    control, worker = two_sparks()
    planned: list[str] = []
    runner.plan(worker, build_worker_steps(Settings(), control), planned.append)
    join_line = next(line for line in planned if "kubeadm join" in line)
    # the plan names the commands and the file; the token does not exist yet
    assert join_line.strip() == (
        "on spark-1: kubeadm token create --print-join-command --ttl 1h; "
        f"write {checks.KUBEADM_JOIN_CONFIG} (0600) with its endpoint, token and CA hash; "
        f"kubeadm join --config {checks.KUBEADM_JOIN_CONFIG}; remove {checks.KUBEADM_JOIN_CONFIG}"
    )
    assert control.cluster.token not in "\n".join(planned)

    reports = runner.join(worker, control, Settings(), out=lambda _l: None)
    assert [r.outcome for r in reports][-1] == "changed"
    ran = [shlex.join(e.argv) for e in control.log]
    assert "kubeadm token create --print-join-command --ttl 1h" in ran
    assert "kubeadm join --config " + checks.KUBEADM_JOIN_CONFIG in [
        shlex.join(e.argv) for e in worker.log
    ]
    assert worker.exists(checks.KUBELET_CONF)
    assert not worker.exists(checks.KUBEADM_JOIN_CONFIG)  # the bootstrap token is gone
    # joined: the plan has nothing left, and the kubelet is what it checks
    again: list[str] = []
    runner.plan(worker, build_worker_steps(Settings(), control), again.append)
    assert again[-1].split()[1:3] == ["join", "ok"]


def test_a_failed_join_leaves_no_token_behind() -> None:
    control, worker = two_sparks()
    control.cluster.token = "zzzzzz.0123456789abcdef"  # what kubeadm prints ...
    real = control.run

    def stale_token(argv, **kw):  # ... is not what the API accepts
        result = real(argv, **kw)
        if list(argv[:2]) == ["kubeadm", "token"]:
            control.cluster.token = "abcdef.0123456789abcdef"
        return result

    control.run = stale_token  # type: ignore[method-assign]
    with pytest.raises(runner.ApplyFailed) as failed:
        runner.join(worker, control, Settings(), out=lambda _l: None)
    assert failed.value.step == "join" and "token rejected" in str(failed.value)
    assert not worker.exists(checks.KUBEADM_JOIN_CONFIG)
    assert not worker.exists(checks.KUBELET_CONF)
