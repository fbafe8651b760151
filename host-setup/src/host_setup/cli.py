"""`host-setup`: turn a fresh DGX OS into the sparkstack cluster, verify it, tear it down."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import render, runner, versions
from .checks import Settings
from .hosts import Host, LocalHost, SSHHost
from .steps import STEP_NAMES, build_steps, build_worker_steps


def common_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--host", metavar="USER@SPARK", help="target over SSH (default: this machine)")
    p.add_argument(
        "--ssh-option",
        action="append",
        default=[],
        metavar="OPT",
        help="extra ssh argument, repeatable (e.g. --ssh-option=-p2222)",
    )
    p.add_argument(
        "--gpu-replicas",
        type=int,
        default=versions.GPU_TIME_SLICING_REPLICAS,
        help="time-slices per GPU (default %(default)s)",
    )
    p.add_argument(
        "--storage",
        choices=("longhorn", "local-path"),
        default="longhorn",
        help="what backs the storage classes longhorn and longhorn-models",
    )
    p.add_argument(
        "--user",
        help="who gets ~/.kube/config and the OpenCode config "
        "(default: the invoking user; $SUDO_USER under sudo, the SSH user remotely)",
    )
    p.add_argument("--advertise-address", help="API server address (default: kubeadm's choice)")
    p.add_argument("--node-name", help="Kubernetes node name (default: the hostname)")
    p.add_argument(
        "--endpoint-host",
        default="127.0.0.1",
        help="host OpenCode uses to reach the NodePorts (default %(default)s)",
    )
    p.add_argument(
        "--direct-models",
        action="store_true",
        help="also give OpenCode the coding and reasoning models directly (needs the opt-in, "
        "unauthenticated manifests/components/direct-models)",
    )
    p.add_argument("--min-free-gb", type=int, default=100, help="preflight disk space floor")
    p.add_argument(
        "--secret-script",
        help=f"Secret generator to run (default: {render.ENSURE_SECRET_SCRIPT} of this checkout)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="host-setup",
        description="Prepare a DGX Spark: kubeadm cluster, containerd + NVIDIA runtime, GPU "
        "time-slicing, storage, cert-manager, KServe, OpenCode. Every step checks first, so "
        "re-running is safe and resumes after a failure.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plan", parents=[common], help="show what apply would change (changes nothing)")
    a = sub.add_parser("apply", parents=[common], help="run the steps that are not satisfied")
    g = a.add_mutually_exclusive_group()
    g.add_argument("--only", metavar="STEP", help="this step alone")
    g.add_argument("--from", dest="start", metavar="STEP", help="this step and the ones after")
    a.add_argument("--dry-run", action="store_true", help="same as plan")
    sub.add_parser("verify", parents=[common], help="run every check; non-zero exit if any fails")
    r = sub.add_parser(
        "reset",
        parents=[common],
        help="kubeadm reset and cluster config removed; containerd, NVIDIA "
        "runtime, model and data directories kept",
    )
    r.add_argument("--purge", action="store_true", help="also delete model and data directories")
    r.add_argument("--yes", action="store_true", help="do not ask")
    r.add_argument("--dry-run", action="store_true", help="say what would be removed")
    j = sub.add_parser(
        "join",
        parents=[common],
        help="make --host (default: this machine) a worker of --control-plane",
    )
    j.add_argument(
        "--control-plane",
        required=True,
        metavar="USER@SPARK",
        help="the control plane, over SSH ('local' for this machine)",
    )
    j.add_argument("--dry-run", action="store_true", help="plan the worker's steps")
    sub.add_parser("steps", parents=[common], help="list the steps in order")
    sub.add_parser("versions", parents=[common], help="print the pinned versions")
    return parser


def make_host(target: str | None, ssh_options: Sequence[str]) -> Host:
    if not target or target in ("local", "localhost"):
        return LocalHost()
    return SSHHost(target, ssh_options)


def settings_from(args: argparse.Namespace) -> Settings:
    if args.gpu_replicas < 2:
        raise SystemExit("--gpu-replicas must be at least 2 (time-slicing shares one GPU)")
    return Settings(
        gpu_replicas=args.gpu_replicas,
        storage=args.storage,
        user=args.user,
        advertise_address=args.advertise_address,
        node_name=args.node_name,
        endpoint_host=args.endpoint_host,
        direct_models=args.direct_models,
        min_free_gb=args.min_free_gb,
        ensure_secret_script=args.secret_script or render.find_ensure_secret(),
    )


def main(argv: Sequence[str] | None = None, host: Host | None = None) -> int:
    try:
        code = run(argv, host)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader left (`host-setup plan | head`): stop quietly, and keep Python's own
        # flush at exit from failing on the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    return code


def run(argv: Sequence[str] | None = None, host: Host | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = lambda line: print(line, flush=True)  # noqa: E731

    if args.command == "steps":
        for i, name in enumerate(STEP_NAMES, 1):
            print(f"{i:2}. {name}")
        return 0
    if args.command == "versions":
        for k, v in versions.summary().items():
            print(f"{k:<24} {v}")
        return 0

    settings = settings_from(args)
    target = host or make_host(args.host, args.ssh_option)
    steps = build_steps(settings)

    if args.command == "plan" or (args.command == "apply" and args.dry_run):
        try:
            chosen = runner.select(steps, getattr(args, "only", None), getattr(args, "start", None))
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        out(f"plan for {target.name} (nothing is changed)")
        reports = runner.plan(target, chosen, out)
        todo = sum(r.outcome == "planned" for r in reports)
        out(f"{todo} step(s) to apply" if todo else "nothing to do")
        if todo:
            out(
                "apply decides each step again from the facts just before it runs it (so it "
                "sees what earlier steps did) and prints each operation as it runs it"
            )
        return 0

    if args.command == "apply":
        try:
            chosen = runner.select(steps, args.only, args.start)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        out(f"apply on {target.name}")
        try:
            reports = runner.apply(target, chosen, out)
        except runner.ApplyFailed:
            return 1
        changed = sum(r.outcome == "changed" for r in reports)
        out(f"done: {changed} step(s) changed, {len(reports) - changed} already satisfied")
        return 0

    if args.command == "verify":
        out(f"verify {target.name}")
        good = runner.verify(target, steps, out, settings)
        out("all checks pass" if good else "some checks FAIL")
        return 0 if good else 1

    if args.command == "reset":
        keep = "deleted (--purge)" if args.purge else "kept"
        out(
            f"reset {target.name}: the cluster goes; containerd and the NVIDIA runtime stay; "
            f"model/data directories {', '.join(settings.data_dirs)} are {keep}"
        )
        if args.dry_run:
            out("dry run: nothing is removed; reset would run:")
            runner.reset(target, settings, purge=args.purge, dry_run=True, out=out)
            return 0
        if not args.yes:
            if not sys.stdin.isatty() or input("type 'reset' to continue: ").strip() != "reset":
                out("aborted (use --yes to skip the question)")
                return 1
        runner.reset(target, settings, purge=args.purge, out=out)
        return 0

    if args.command == "join":
        control = make_host(args.control_plane, args.ssh_option)
        worker_steps = build_worker_steps(settings, control)
        if args.dry_run:
            runner.plan(target, worker_steps, out)
            return 0
        out(f"join {target.name} to {control.name}")
        try:
            runner.apply(target, worker_steps, out)
        except runner.ApplyFailed:
            return 1
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
