"""One list of deployed services, wherever it appears: Nix, services/, the manifests, the
Tiltfile (and services.json, which Nix and the Tiltfile read)."""

from __future__ import annotations

import tomllib
from typing import Any

from nix_tilt_support import ROOT, TiltRecorder, load_services, nix_eval_json, repository


def deployed_service_folders() -> set[str]:
    """services/<name> whose project is called <name> and has a console script <name>.

    That is what makes a folder a deployable service; services/common (library) and
    services/stack (the `sparkstack` CLI) are not.
    """
    found = set()
    for pyproject in (ROOT / "services").glob("*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        name = pyproject.parent.name
        if project["name"] == name and name in project.get("scripts", {}):
            found.add(name)
    return found


def test_service_list_agrees_across_nix_folders_manifests_and_tiltfile(
    tilt_runs: dict[str, TiltRecorder], dev_objects: dict[str, list[dict[str, Any]]]
) -> None:
    spec = load_services()
    prefix = spec["image_prefix"]
    from_json = set(spec["services"])

    nix = nix_eval_json("import ./nix/services.nix")
    from_nix = set(nix["names"])
    nix_images = {svc["devImage"]["repository"] for svc in nix["services"].values()}

    from_folders = deployed_service_folders()

    lists = {"services.json": from_json, "nix": from_nix, "services/": from_folders}
    for mode, objects in dev_objects.items():
        apps = {
            o["metadata"]["name"]
            for o in objects
            if o["kind"] == "Deployment"
            and o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "app"
        }
        images = {
            repository(c["image"]).removeprefix(prefix + "/")
            for o in objects
            if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"]
            if c["image"].startswith(prefix + "/")
        }
        lists[f"manifests ({mode}) app Deployments"] = apps
        lists[f"manifests ({mode}) {prefix}/* images"] = images

    for mode, run in tilt_runs.items():
        lists[f"Tiltfile ({mode}) custom_build"] = {
            b.ref.removeprefix(prefix + "/") for b in run.custom_builds
        }
        lists[f"Tiltfile ({mode}) forwarded resources"] = {
            r.name for r in run.resources.values() if r.port_forwards
        }
        assert {b.ref for b in run.custom_builds} == nix_images

    expected = from_json
    assert expected, "services.json lists no service"
    disagreeing = {where: sorted(names) for where, names in lists.items() if names != expected}
    assert not disagreeing, f"services.json has {sorted(expected)}, but: {disagreeing}"
