"""tilt/build-image.sh, Tilt's custom build command, against stand-ins for nix and ctr: it builds
the flake's dev image, streams it into containerd's k8s.io namespace, tags it with a content
tag and writes that ref for Tilt; an unchanged image is not imported twice."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from nix_tilt_support import ROOT, require_tool

SCRIPT = ROOT / "tilt" / "build-image.sh"
STORE_HASH = "0123456789abcdfghijklmnpqrsvwxyz"

FAKE_NIX = f"""#!/usr/bin/env bash
# nix build --out-link LINK .#ATTR: "builds" a stream script into a fake store
echo "nix $*" >> "$FAKE_LOG"
[ "$1" = --extra-experimental-features ] && shift 2
[ "$1" = build ] || exit 1
link=$3 attr=$4
out="$FAKE_STORE/{STORE_HASH}-stream-${{attr#.#}}"
mkdir -p "$FAKE_STORE"
printf '#!/usr/bin/env bash\\nprintf "IMAGE-TAR %s" "%s"\\n' "$attr" > "$out"
chmod +x "$out"
ln -sfn "$out" "$link"
"""

FAKE_CTR = """#!/usr/bin/env bash
echo "ctr $*" >> "$FAKE_LOG"
[ "$1 $2" = "--namespace k8s.io" ] || { echo "wrong namespace" >&2; exit 1; }
shift 2
case "$1 $2" in
  "images ls") grep -qxF "${4#name==}" "$FAKE_IMAGES" 2>/dev/null && echo "${4#name==}"; true ;;
  "images import") cat > "$FAKE_IMPORTED"; echo "docker.io/sparkstack/x:dev" >> "$FAKE_IMAGES" ;;
  "images tag") echo "${@: -1}" >> "$FAKE_IMAGES" ;;
  *) exit 1 ;;
esac
"""


def run_script(tmp_path: Path, service: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    require_tool("git")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("nix", FAKE_NIX), ("ctr", FAKE_CTR)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    ref_file = tmp_path / "refs" / f"{service}.ref"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "NIX": str(bin_dir / "nix"),
        "CTR": str(bin_dir / "ctr"),
        "EXPECTED_REF": f"sparkstack/{service}:tilt-build-1",
        "FAKE_LOG": str(tmp_path / "log"),
        "FAKE_STORE": str(tmp_path / "store"),
        "FAKE_IMAGES": str(tmp_path / "images"),
        "FAKE_IMPORTED": str(tmp_path / "imported"),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), service, str(ref_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, ref_file


def test_builds_imports_tags_and_writes_the_ref(tmp_path: Path) -> None:
    proc, ref_file = run_script(tmp_path, "rag-server")
    assert proc.returncode == 0, proc.stderr
    ref = f"sparkstack/rag-server:nix-{STORE_HASH[:20]}"
    assert ref_file.read_text() == ref + "\n"
    log = (tmp_path / "log").read_text().splitlines()
    assert log[0] == (
        "nix --extra-experimental-features nix-command flakes build --out-link "
        f"{tmp_path}/refs/rag-server-dev-image .#rag-server-dev-image"
    )
    assert "ctr --namespace k8s.io images import -" in log
    assert (
        "ctr --namespace k8s.io images tag --force docker.io/sparkstack/rag-server:dev "
        f"docker.io/{ref}"
    ) in log
    # the stream script's output went into ctr's stdin
    assert (tmp_path / "imported").read_text() == "IMAGE-TAR .#rag-server-dev-image"
    # the out-link keeps the image script alive (a GC root) next to the ref
    assert (tmp_path / "refs" / "rag-server-dev-image").is_symlink()


def test_an_image_already_in_containerd_is_not_imported_again(tmp_path: Path) -> None:
    first, _ = run_script(tmp_path, "orchestrator")
    assert first.returncode == 0, first.stderr
    (tmp_path / "imported").unlink()
    second, ref_file = run_script(tmp_path, "orchestrator")
    assert second.returncode == 0, second.stderr
    assert not (tmp_path / "imported").exists()
    assert "already in containerd" in second.stderr
    ref = ref_file.read_text().strip()
    # :dev is moved to this build again
    assert (tmp_path / "log").read_text().splitlines()[-1] == (
        f"ctr --namespace k8s.io images tag --force docker.io/{ref} "
        "docker.io/sparkstack/orchestrator:dev"
    )
    assert ref_file.read_text().startswith("sparkstack/orchestrator:nix-")


def test_usage_without_arguments() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "usage: tilt/build-image.sh SERVICE REF_FILE" in proc.stderr
