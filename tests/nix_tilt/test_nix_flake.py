"""The Nix side, offline: every .nix file parses, the pure parts evaluate, the flake's outputs
have the expected shape, and flake.lock is a real lock that matches flake.nix.

Nix runs with `--store dummy://`: evaluation only (no daemon, no store, no network).
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path

import pytest
from nix_tilt_support import ROOT, load_services, nix_eval_json, nix_files, nix_instantiate

SYSTEMS = ["aarch64-linux", "x86_64-linux"]
FLAKE_INPUTS = ["nixpkgs", "pyproject-build-systems", "pyproject-nix", "uv2nix"]


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nix_file_parses(path: Path) -> None:
    nix_instantiate("--parse", str(path))


def test_nix_files_cover_the_flake() -> None:
    names = {str(p.relative_to(ROOT)) for p in nix_files()}
    assert {
        "flake.nix",
        "nix/default.nix",
        "nix/services.nix",
        "nix/python.nix",
        "nix/images.nix",
        "nix/devshell.nix",
        "nix/checks.nix",
    } <= names


def test_services_nix_reads_services_json() -> None:
    spec = load_services()
    services = nix_eval_json("import ./nix/services.nix")
    assert services["names"] == sorted(spec["services"])
    assert services["imagePrefix"] == spec["image_prefix"]
    assert services["tag"] == spec["tag"]
    assert services["systems"] == SYSTEMS
    assert services["user"] == {"uid": 1000, "gid": 1000, "name": "app"}
    for name, svc in services["services"].items():
        json_svc = spec["services"][name]
        prefix = spec["image_prefix"]
        assert svc["image"]["ref"] == f"{prefix}/{name}:{spec['tag']}"
        assert svc["devImage"]["ref"] == f"{prefix}/{name}:dev"
        assert svc["script"] == name
        assert svc["port"] == json_svc["port"]
        assert svc["package"] == json_svc["package"]
        # the dev image's editable sources: the service's and its libraries' src trees
        dirs = [f"services/{name}", *(spec["libraries"][lib] for lib in json_svc["libraries"])]
        assert svc["devSync"] == [{"local": f"{d}/src", "remote": f"/app/{d}/src"} for d in dirs]
        for sync in svc["devSync"]:
            assert (ROOT / sync["local"]).is_dir()


def flake_outputs_shape() -> dict[str, dict[str, list[str]]]:
    """Attribute names of the flake's outputs, evaluated without fetching any input."""
    expr = """
      let
        unused = name: throw "input ${name} must not be needed to list the outputs";
        outputs = import ./nix {
          self = unused "self";
          nixpkgs = unused "nixpkgs";
          pyproject-nix = unused "pyproject-nix";
          uv2nix = unused "uv2nix";
          pyproject-build-systems = unused "pyproject-build-systems";
        };
        names = builtins.mapAttrs (_: builtins.attrNames);
      in {
        packages = names outputs.packages;
        apps = names outputs.apps;
        devShells = names outputs.devShells;
        checks = names outputs.checks;
      }
    """
    return nix_eval_json(expr)


def test_flake_outputs_per_system_and_service() -> None:
    names = sorted(load_services()["services"])
    shape = flake_outputs_shape()
    for output in ("packages", "apps", "devShells", "checks"):
        assert sorted(shape[output]) == SYSTEMS, output
    for system in SYSTEMS:
        expected_packages = {"default", "host-setup"} | {
            f"{n}{suffix}" for n in names for suffix in ("-venv", "-image", "-dev-image")
        }
        assert set(shape["packages"][system]) == expected_packages
        assert shape["apps"][system] == ["default", "host-setup"]
        assert shape["devShells"][system] == ["default"]
        assert set(shape["checks"][system]) == {"tests"} | {f"{n}-imports" for n in names}


def flake_inputs() -> dict[str, dict[str, object]]:
    return nix_eval_json("(import ./flake.nix).inputs")


def test_flake_nix_inputs() -> None:
    inputs = flake_inputs()
    assert sorted(inputs) == FLAKE_INPUTS
    # one nixpkgs and one pyproject.nix for everything
    assert inputs["pyproject-nix"]["inputs"] == {"nixpkgs": {"follows": "nixpkgs"}}
    assert inputs["uv2nix"]["inputs"] == {
        "nixpkgs": {"follows": "nixpkgs"},
        "pyproject-nix": {"follows": "pyproject-nix"},
    }
    assert inputs["pyproject-build-systems"]["inputs"] == {
        "nixpkgs": {"follows": "nixpkgs"},
        "pyproject-nix": {"follows": "pyproject-nix"},
        "uv2nix": {"follows": "uv2nix"},
    }


def parse_github_url(url: str) -> dict[str, str]:
    m = re.fullmatch(r"github:([^/]+)/([^/]+)(?:/([^/?]+))?", url)
    assert m, url
    owner, repo, ref = m.groups()
    return {"owner": owner, "repo": repo, **({"ref": ref} if ref else {})}


def test_flake_lock_is_a_real_lock_matching_flake_nix() -> None:
    lock = json.loads((ROOT / "flake.lock").read_text())
    assert lock["version"] == 7
    nodes = lock["nodes"]
    root = nodes[lock["root"]]
    inputs = flake_inputs()
    assert sorted(root["inputs"]) == sorted(inputs)
    for name, spec in inputs.items():
        node = nodes[root["inputs"][name]]
        locked, original = node["locked"], node["original"]
        assert original == {**parse_github_url(spec["url"]), "type": "github"}, name
        assert locked["type"] == "github"
        assert (locked["owner"], locked["repo"]) == (original["owner"], original["repo"])
        assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"]), name
        assert isinstance(locked["lastModified"], int) and locked["lastModified"] > 1.7e9
        nar = locked["narHash"]
        assert nar.startswith("sha256-"), name
        assert len(base64.b64decode(nar.removeprefix("sha256-"), validate=True)) == 32
        # follows in flake.nix are follows in the lock (no second nixpkgs or pyproject.nix)
        follows = {k: [v["follows"]] for k, v in spec.get("inputs", {}).items()}
        assert node.get("inputs", {}) == follows, name
    # nothing in the lock that flake.nix does not ask for
    assert set(nodes) == {lock["root"], *root["inputs"].values()}


def test_dev_image_entrypoint_script_is_in_nix() -> None:
    # images.nix puts nix/dev-reload.py into the dev images; keep the reference honest
    assert "./dev-reload.py" in (ROOT / "nix" / "images.nix").read_text()
    assert (ROOT / "nix" / "dev-reload.py").is_file()


def test_each_service_lists_the_workspace_libraries_it_runs() -> None:
    """services.json names the libraries a service's dev image installs editable and Tilt
    syncs; they are exactly the workspace libraries its package depends on (transitively),
    so editing the console's files reaches the orchestrator's pod."""
    spec = load_services()
    libraries = spec["libraries"]

    def deps(directory: str) -> set[str]:
        project = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]
        direct = {d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]}
        found = direct & set(libraries)
        for lib in list(found):
            found |= deps(libraries[lib])
        return found

    for name, svc in spec["services"].items():
        assert set(svc["libraries"]) == deps(f"services/{name}"), name
        assert len(svc["libraries"]) == len(set(svc["libraries"]))
    # every entry names the package that lives in its directory
    for lib, directory in libraries.items():
        assert (
            tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]["name"]
            == lib
        )
