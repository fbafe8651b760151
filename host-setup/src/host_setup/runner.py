"""Running steps: plan, apply (resumable), verify, reset, join."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import checks, render
from .checks import Settings, Status
from .hosts import CommandError, Host
from .steps import Step, StepError, build_worker_steps

Out = Callable[[str], None]


@dataclass
class StepReport:
    name: str
    outcome: str  # ok (already satisfied), changed, failed, planned, skipped
    detail: str = ""


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


def safe_status(step: Step, host: Host) -> Status:
    """A check that crashes (tool missing, cluster down) counts as not satisfied."""
    try:
        return step.status(host)
    except (CommandError, StepError, OSError, ValueError, KeyError, TypeError) as exc:
        return checks.fail(f"check could not run: {exc}".splitlines()[0])


def plan(host: Host, steps: Sequence[Step], out: Out = print) -> list[StepReport]:
    """What apply would change. Runs checks only."""
    reports = []
    width = len(steps)
    for i, step in enumerate(steps, 1):
        st = safe_status(step, host)
        if st:
            reports.append(StepReport(step.name, "ok", st.detail))
            out(f"[{i:2}/{width}] {step.name:<20} ok      {st.detail}")
        else:
            reports.append(StepReport(step.name, "planned", st.detail))
            out(f"[{i:2}/{width}] {step.name:<20} change  {step.action} (now: {st.detail})")
    return reports


def apply(host: Host, steps: Sequence[Step], out: Out = print) -> list[StepReport]:
    """Apply each unsatisfied step in order; stop at the first failure (raise ApplyFailed).

    Re-running resumes: satisfied steps are only checked, never re-applied.
    """
    reports: list[StepReport] = []
    width = len(steps)
    for i, step in enumerate(steps, 1):
        prefix = f"[{i:2}/{width}] {step.name:<20}"
        st = safe_status(step, host)
        if st:
            reports.append(StepReport(step.name, "ok", st.detail))
            out(f"{prefix} ok      {st.detail}")
            continue
        out(f"{prefix} apply   {step.action}")
        try:
            step.apply(host)
            after = safe_status(step, host)
            if not after:
                raise StepError(f"applied, but the check still fails: {after.detail}")
        except CommandError as exc:
            msg = exc.describe()
        except StepError as exc:
            msg = str(exc)
        else:
            reports.append(StepReport(step.name, "changed", after.detail))
            out(f"{prefix} done    {after.detail}")
            continue
        reports.append(StepReport(step.name, "failed", msg))
        out(f"{prefix} FAILED")
        out(msg)
        out(
            "Fix the cause and run `host-setup apply` again: steps already done are checked "
            "and skipped, so it resumes here."
        )
        raise ApplyFailed(step.name, msg, reports)
    return reports


def verify(host: Host, steps: Sequence[Step], out: Out = print) -> bool:
    """Run every check; True when all pass."""
    good = True
    for i, step in enumerate(steps, 1):
        st = safe_status(step, host)
        good = good and bool(st)
        out(f"[{i:2}/{len(steps)}] {step.name:<20} {'ok' if st else 'FAIL':<7} {st.detail}")
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


def reset(host: Host, settings: Settings, *, purge: bool = False, out: Out = print) -> None:
    if host.run(["kubeadm", "version", "-o", "short"], check=False).ok:
        out("kubeadm reset")
        host.run(["kubeadm", "reset", "--force", "--cri-socket", render.CONTAINERD_SOCKET])
    for path in CLUSTER_PATHS:
        if host.exists(path):
            out(f"remove {path}")
            host.remove(path)
    _, kubeconfig = checks.user_kubeconfig_path(host, settings)
    if host.exists(kubeconfig):
        out(f"remove {kubeconfig}")
        host.remove(kubeconfig)
    for link in ("cni0", "flannel.1"):
        host.run(["ip", "link", "delete", link], check=False)
    # kube-network-policies' rules live in the host's nftables, not in a pod
    host.run(["nft", "delete", "table", "inet", "kube-network-policies"], check=False)
    for d in settings.data_dirs:
        if purge and host.exists(d):
            out(f"purge {d}")
            host.remove(d)
        elif host.exists(d):
            out(f"keep {d} (model weights and data; --purge deletes it)")
    out("kept: containerd and its config, the NVIDIA runtime, packages, host settings")


# join ------------------------------------------------------------------------------------
def join(
    worker: Host, control_plane: Host, settings: Settings, out: Out = print
) -> list[StepReport]:
    return apply(worker, build_worker_steps(settings, control_plane), out)
