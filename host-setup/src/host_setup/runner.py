"""Running steps: plan, apply (resumable), verify, reset, join."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from . import checks, facts, first_run, render
from .checks import Settings, Status
from .hosts import CommandError, Host
from .ops import Op, Remove, StepError, run
from .steps import Step, build_worker_steps

Out = Callable[[str], None]


@dataclass
class StepReport:
    name: str
    outcome: str  # ok (already satisfied), changed, failed, planned
    detail: str = ""
    operations: list[str] = field(default_factory=list)  # describe() of each, in order


class ApplyFailed(RuntimeError):
    def __init__(self, step: str, message: str, reports: list[StepReport]) -> None:
        self.step = step
        self.reports = reports
        super().__init__(f"step {step} failed:\n{message}")


def select(steps: Sequence[Step], only: str | None = None, start: str | None = None) -> list[Step]:
    names = [s.name for s in steps]
    for wanted in (only, start):
        if wanted is not None and wanted not in names:
            raise ValueError(f"unknown step {wanted!r}; steps: {', '.join(names)}")
    if only is not None:
        return [s for s in steps if s.name == only]
    if start is not None:
        return list(steps[names.index(start) :])
    return list(steps)


CHECK_ERRORS = (CommandError, StepError, OSError, ValueError, KeyError, TypeError)


def safe_status(step: Step, host: Host) -> Status:
    """A check that crashes (tool missing, cluster down) counts as not satisfied."""
    try:
        return step.status(host)
    except CHECK_ERRORS as exc:
        return checks.fail(f"check could not run: {exc}".splitlines()[0])


def decide(step: Step, host: Host) -> tuple[Status, list[Op], list[Op]]:
    """The one code path plan and apply share: the step's status and, when it is not
    satisfied, its operations and cleanup, all decided from facts before anything runs."""
    st = safe_status(step, host)
    if st:
        return st, [], []
    return st, step.operations(host), step.cleanup(host)


INDENT = " " * 8


def describe(ops: Sequence[Op], cleanup: Sequence[Op] = ()) -> list[str]:
    """The lines plan prints and apply prints as it runs: one per operation."""
    return [op.describe() for op in ops] + [f"finally: {op.describe()}" for op in cleanup]


def plan(host: Host, steps: Sequence[Step], out: Out = print) -> list[StepReport]:
    """What apply would run, operation by operation. Reads facts only."""
    reports = []
    width = len(steps)
    for i, step in enumerate(steps, 1):
        prefix = f"[{i:2}/{width}] {step.name:<20}"
        try:
            st, ops, cleanup = decide(step, host)
        except (StepError, CommandError) as exc:
            reports.append(StepReport(step.name, "planned", f"cannot plan: {exc}"))
            out(f"{prefix} change  cannot plan: {exc}")
            continue
        if st:
            reports.append(StepReport(step.name, "ok", st.detail))
            out(f"{prefix} ok      {st.detail}")
            continue
        lines = describe(ops, cleanup)
        reports.append(StepReport(step.name, "planned", st.detail, lines))
        out(f"{prefix} change  (now: {st.detail})")
        for line in lines:
            out(INDENT + line)
    return reports


def execute(host: Host, ops: Sequence[Op], cleanup: Sequence[Op], out: Out) -> None:
    try:
        for op in ops:
            out(INDENT + op.describe())
            op.execute(host)
    finally:
        for op in cleanup:
            out(INDENT + f"finally: {op.describe()}")
            try:
                op.execute(host)
            except CHECK_ERRORS as exc:  # a failed cleanup must not hide the real error
                out(INDENT + f"  (cleanup failed: {str(exc).splitlines()[0]})")


def apply(host: Host, steps: Sequence[Step], out: Out = print) -> list[StepReport]:
    """Apply each unsatisfied step in order; stop at the first failure (raise ApplyFailed).

    Each step's operations are decided from facts right before it runs (so they see what the
    steps before it did) and printed as they run: the lines `plan` printed for that state.
    Re-running resumes: satisfied steps are only checked, never re-applied.
    """
    reports: list[StepReport] = []
    width = len(steps)
    for i, step in enumerate(steps, 1):
        prefix = f"[{i:2}/{width}] {step.name:<20}"
        ops: list[Op] = []
        try:
            st, ops, cleanup = decide(step, host)
            if st:
                reports.append(StepReport(step.name, "ok", st.detail))
                out(f"{prefix} ok      {st.detail}")
                continue
            out(f"{prefix} apply   (now: {st.detail})")
            execute(host, ops, cleanup, out)
            after = safe_status(step, host)
            if not after:
                raise StepError(f"applied, but the check still fails: {after.detail}")
        except CommandError as exc:
            msg = exc.describe()
        except StepError as exc:
            msg = str(exc)
        else:
            reports.append(StepReport(step.name, "changed", after.detail, describe(ops, cleanup)))
            out(f"{prefix} done    {after.detail}")
            continue
        reports.append(StepReport(step.name, "failed", msg, describe(ops)))
        out(f"{prefix} FAILED")
        out(msg)
        out(
            "Fix the cause and run `host-setup apply` again: steps already done are checked "
            "and skipped, so it resumes here."
        )
        raise ApplyFailed(step.name, msg, reports)
    return reports


def verify(
    host: Host,
    steps: Sequence[Step],
    out: Out = print,
    settings: Settings | None = None,
    assumptions: Mapping[str, first_run.Assumption] = first_run.FIRST_RUN_CHECKS,
) -> bool:
    """Run every step's check, then the first-run assumptions; True when all pass."""
    good = True
    for i, step in enumerate(steps, 1):
        st = safe_status(step, host)
        good = good and bool(st)
        out(f"[{i:2}/{len(steps)}] {step.name:<20} {'ok' if st else 'FAIL':<7} {st.detail}")
    if assumptions:
        out("what only the Spark can confirm:")
    for name, probe in assumptions.items():
        try:
            st = probe(host, settings or Settings())
        except CHECK_ERRORS as exc:
            st = checks.fail(f"check could not run: {exc}".splitlines()[0])
        good = good and bool(st)
        out(f"      {name:<20} {'ok' if st else 'FAIL':<7} {st.detail}")
    return good


# reset ------------------------------------------------------------------------------------
# Cluster state removed by reset; containerd, its config and the NVIDIA runtime stay, and so
# do the packages (still held) and the host settings.
CLUSTER_PATHS = (
    "/etc/cni/net.d",
    "/var/lib/cni",
    "/run/flannel",
    "/etc/kubernetes",
    checks.STATE_DIR,
)
# /var/lib/kubelet and /var/lib/etcd are left to `kubeadm reset`, which unmounts the pods'
# volumes first: removing them ourselves could reach into a still-mounted Longhorn volume.


KUBEADM_VERSION = facts.Fact(("kubeadm", "version", "-o", "short"), lambda r: r.ok)


def reset_operations(host: Host, settings: Settings, *, purge: bool = False) -> list[Op]:
    """What `reset` runs, decided from facts (so `reset --dry-run` prints exactly this)."""
    ops: list[Op] = []
    if host.fact(KUBEADM_VERSION):
        ops.append(run("kubeadm", "reset", "--force", "--cri-socket", render.CONTAINERD_SOCKET))
    _, kubeconfig = checks.user_kubeconfig_path(host, settings)
    ops += [Remove(p) for p in (*CLUSTER_PATHS, kubeconfig) if host.fact(facts.exists(p))]
    ops += [run("ip", "link", "delete", link, check=False) for link in ("cni0", "flannel.1")]
    # kube-network-policies' rules live in the host's nftables, not in a pod
    ops.append(run("nft", "delete", "table", "inet", "kube-network-policies", check=False))
    if purge:
        ops += [Remove(d) for d in settings.data_dirs if host.fact(facts.exists(d))]
    return ops


def reset(
    host: Host, settings: Settings, *, purge: bool = False, dry_run: bool = False, out: Out = print
) -> list[Op]:
    ops = reset_operations(host, settings, purge=purge)
    if dry_run:
        for op in ops:
            out(INDENT + op.describe())
    else:
        execute(host, ops, [], out)
    kept = [d for d in settings.data_dirs if not purge and host.fact(facts.exists(d))]
    for d in kept:
        out(f"kept {d} (model weights and data; --purge deletes it)")
    out("kept: containerd and its config, the NVIDIA runtime, packages, host settings")
    return ops


# join ------------------------------------------------------------------------------------
def join(
    worker: Host, control_plane: Host, settings: Settings, out: Out = print
) -> list[StepReport]:
    return apply(worker, build_worker_steps(settings, control_plane), out)
