#!/usr/bin/env python3
"""Build the pinned upstream binaries the local control plane and the tests use.

Everything comes from the Go module proxy: each component is built with
`go build` inside a throwaway wrapper module whose `replace` lines are derived
from the upstream `go.mod` (never typed by hand), or, for modules whose own
`replace` lines must apply (Velero), inside a copy of the downloaded module. Binaries are cached by
version under ``${XDG_CACHE_HOME:-~/.cache}/elasticsan-snapshotter/bin``, so a
warm run builds nothing; Go's own build cache is reused as well.

    python3 hack/build_binaries.py            # build what is missing, print paths
    python3 hack/build_binaries.py --json     # the same as one JSON object
    python3 hack/build_binaries.py --only velero --only velero-plugin-for-aws   # optional ones
    python3 hack/build_binaries.py --all      # everything, optional components included

Exit status is non-zero with one clear ``error:`` line when something fails.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"


class BuildError(Exception):
    """A failure with a one-line explanation for the person running the build."""


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise BuildError(f"{path}: malformed line {raw!r}")
        versions[key.strip()] = value.strip()
    return versions


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "elasticsan-snapshotter"


@dataclass(frozen=True)
class Component:
    """A set of binaries built from one upstream module at one version."""

    key: str  # name of the cache folder
    module: str  # the module that is required by the wrapper
    version: str
    packages: dict[str, str]  # binary name -> Go package path
    extra_requires: dict[str, str] = field(default_factory=dict)
    ldflags: tuple[str, ...] = ()
    # Build the downloaded module itself (packages are then relative, ``./cmd/x``), so that its own
    # go.mod, replace directives and go.sum apply exactly as upstream builds it.
    main_module: bool = False
    # Built only when asked for by name (--only) or with --all: the suite's core never waits for it.
    optional: bool = False

    def binary_path(self, root: Path, name: str) -> Path:
        return root / "bin" / self.key / self.version / name


def components(v: dict[str, str]) -> list[Component]:
    k8s = v["KUBERNETES_VERSION"]
    major, minor = k8s.lstrip("v").split(".")[:2]
    k8s_version_pkg = "k8s.io/component-base/version"
    snap = v["EXTERNAL_SNAPSHOTTER_VERSION"]
    return [
        Component(
            key="kubernetes",
            module="k8s.io/kubernetes",
            version=k8s,
            packages={
                "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
                "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
                "kubectl": "k8s.io/kubernetes/cmd/kubectl",
            },
            ldflags=(
                f"-X {k8s_version_pkg}.gitVersion={k8s}",
                f"-X {k8s_version_pkg}.gitMajor={major}",
                f"-X {k8s_version_pkg}.gitMinor={minor}",
                f"-X {k8s_version_pkg}.gitTreeState=clean",
                f"-X {k8s_version_pkg}.buildDate=1970-01-01T00:00:00Z",
                # kubectl reports its own copy of the version variables.
                f"-X k8s.io/client-go/pkg/version.gitVersion={k8s}",
                f"-X k8s.io/client-go/pkg/version.gitMajor={major}",
                f"-X k8s.io/client-go/pkg/version.gitMinor={minor}",
            ),
        ),
        Component(
            key="etcd",
            module="go.etcd.io/etcd/server/v3",
            version=v["ETCD_VERSION"],
            packages={"etcd": "go.etcd.io/etcd/server/v3"},
        ),
        Component(
            key="external-snapshotter",
            module="github.com/kubernetes-csi/external-snapshotter/v8",
            version=snap,
            packages={
                "snapshot-controller": "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller",
                "csi-snapshotter": "github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter",
            },
            extra_requires={"github.com/kubernetes-csi/external-snapshotter/client/v8": snap},
            ldflags=(f"-X main.version={snap}",),
        ),
        Component(
            key="csi-test",
            module="github.com/kubernetes-csi/csi-test/v5",
            version=v["CSI_TEST_VERSION"],
            packages={"csi-sanity": "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity"},
            ldflags=(f"-X main.version={v['CSI_TEST_VERSION']}",),
        ),
        Component(
            key="helm",
            module="helm.sh/helm/v3",
            version=v["HELM_VERSION"],
            packages={"helm": "helm.sh/helm/v3/cmd/helm"},
            ldflags=(
                f"-X helm.sh/helm/v3/internal/version.version={v['HELM_VERSION']}",
                "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            ),
        ),
        Component(
            key="velero",
            module="github.com/vmware-tanzu/velero",
            version=v["VELERO_VERSION"],
            packages={"velero": "./cmd/velero"},
            ldflags=(
                f"-X github.com/vmware-tanzu/velero/pkg/buildinfo.Version={v['VELERO_VERSION']}",
                "-X github.com/vmware-tanzu/velero/pkg/buildinfo.GitTreeState=clean",
                # controller-runtime's own metrics listener defaults to :8080 on every interface
                # and Velero offers no flag for it; "0" turns it off (Velero's metrics have
                # --metrics-address).
                "-X sigs.k8s.io/controller-runtime/pkg/metrics/server.DefaultBindAddress=0",
            ),
            main_module=True,
            optional=True,
        ),
        Component(
            key="velero-plugin-for-aws",
            module="github.com/vmware-tanzu/velero-plugin-for-aws",
            version=v["VELERO_PLUGIN_FOR_AWS_VERSION"],
            packages={"velero-plugin-for-aws": "./velero-plugin-for-aws"},
            main_module=True,
            optional=True,
        ),
    ]


def log(message: str) -> None:
    print(f"[build] {message}", file=sys.stderr, flush=True)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["GOFLAGS"] = env["GOFLAGS"] + " -mod=mod"
    env.setdefault("CGO_ENABLED", "0")
    return env


def run_go(args: list[str], cwd: Path, what: str) -> str:
    if shutil.which("go") is None:
        raise BuildError(
            "the Go toolchain ('go') is not on PATH; install Go 1.26 or newer to build the test control plane"
        )
    proc = subprocess.run(["go", *args], cwd=cwd, env=go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        for ln in lines:  # prefer the line that names a download failure
            if "reading" in ln and ("404" in ln or "410" in ln or "dial" in ln or "unrecognized" in ln):
                detail = ln
                break
        raise BuildError(f"{what} failed: {detail.strip()}")
    return proc.stdout


def module_info(module: str, version: str, scratch: Path) -> dict[str, str]:
    out = run_go(
        ["mod", "download", "-json", f"{module}@{version}"], scratch, f"downloading {module}@{version}"
    )
    info: dict[str, str] = json.loads(out)
    if info.get("Error"):
        raise BuildError(f"downloading {module}@{version} failed: {info['Error']}")
    return info


def derived_replaces(comp: Component, scratch: Path) -> list[tuple[str, str]]:
    """Turn the upstream go.mod's local `replace` lines into module versions.

    Inside a monorepo, `replace X => ./staging/...` (Kubernetes) or
    `replace X => ../api` (etcd, external-snapshotter) point at sibling modules
    published at the matching tag. Outside the monorepo they must be replaced
    by published versions: Kubernetes staging modules are tagged v0.MINOR.PATCH
    for release v1.MINOR.PATCH; other repositories tag their sub-modules with
    the main version.
    """
    info = module_info(comp.module, comp.version, scratch)
    gomod = json.loads(
        run_go(["mod", "edit", "-json", info["GoMod"]], scratch, f"reading go.mod of {comp.module}")
    )
    required = {req["Path"] for req in gomod.get("Require") or []}
    replaces: list[tuple[str, str]] = []
    for rep in gomod.get("Replace") or []:
        new_path = rep["New"]["Path"]
        if new_path.startswith(".") and rep["Old"]["Path"] not in required:
            # Guards such as etcd's `replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY`
            # name modules that must stay out of the graph; nothing to pin.
            continue
        if not new_path.startswith("."):
            # A replace by another published module: keep it as upstream has it.
            replaces.append((rep["Old"]["Path"], f"{new_path} {rep['New'].get('Version', '')}".strip()))
            continue
        old = rep["Old"]["Path"]
        if comp.module == "k8s.io/kubernetes":
            version = "v0." + comp.version.lstrip("v").split(".", 1)[1]
        else:
            version = comp.version
        replaces.append((old, f"{old} {version}"))
    return replaces


def write_wrapper(comp: Component, workdir: Path, scratch: Path) -> None:
    lines = [
        "// Generated by hack/build_binaries.py; a throwaway module to build pinned upstream binaries.",
        f"module build.local/{comp.key}",
        "",
        "go 1.26",
        "",
        "require (",
        f"\t{comp.module} {comp.version}",
    ]
    lines += [f"\t{m} {ver}" for m, ver in comp.extra_requires.items()]
    lines.append(")")
    replaces = derived_replaces(comp, scratch)
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{old} => {new}" for old, new in replaces]
        lines.append(")")
    (workdir / "go.mod").write_text("\n".join(lines) + "\n")
    # A tools file keeps the main packages in the module graph for `go mod tidy`.
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in comp.packages.values())
    (workdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")


def build(comp: Component, root: Path) -> None:
    missing = [n for n in comp.packages if not comp.binary_path(root, n).exists()]
    if not missing:
        return
    started = time.monotonic()
    log(f"building {', '.join(missing)} from {comp.module}@{comp.version} (first time only)")
    workroot = root / "work"
    workroot.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{comp.key}-", dir=workroot) as tmp:
        workdir = Path(tmp)
        mode: list[str] = []
        if comp.main_module:
            srcdir = workdir / "src"
            copy_module(Path(module_info(comp.module, comp.version, workdir)["Dir"]), srcdir)
            mode = ["-mod=readonly"]  # upstream's go.sum, never re-resolved
        else:
            srcdir = workdir
            write_wrapper(comp, workdir, workdir)
            run_go(["mod", "tidy", "-e"], workdir, f"resolving modules for {comp.module}@{comp.version}")
        outdir = workdir / "out"
        outdir.mkdir()
        ldflags = " ".join(("-s", "-w", *comp.ldflags))
        for name in missing:
            run_go(
                [
                    "build",
                    *mode,
                    "-trimpath",
                    "-ldflags",
                    ldflags,
                    "-o",
                    str(outdir / name),
                    comp.packages[name],
                ],
                srcdir,
                f"building {name} ({comp.module}@{comp.version})",
            )
            target = comp.binary_path(root, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            staged = target.with_suffix(".partial")
            shutil.copy2(outdir / name, staged)
            os.replace(staged, target)
            log(f"  {name} -> {target}")
    log(f"{comp.key} done in {time.monotonic() - started:.0f}s")


def copy_module(source: Path, target: Path) -> None:
    """A writable copy of a module from Go's read-only module cache."""
    shutil.copytree(source, target, copy_function=shutil.copyfile)
    for folder, _, _ in os.walk(target):
        os.chmod(folder, 0o755)


@contextlib.contextmanager
def cache_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def wanted(comp: Component, only: set[str] | None, everything: bool) -> bool:
    """Named by --only, or (without --only) not optional unless --all asks for everything."""
    if only is not None:
        return bool(only & set(comp.packages))
    return everything or not comp.optional


def artifacts(
    versions: dict[str, str], root: Path, only: set[str] | None = None, *, everything: bool = False
) -> dict[str, object]:
    """Build what is missing and return where everything is."""
    result: dict[str, object] = {"versions": versions, "binaries": {}}
    binaries: dict[str, str] = {}
    with cache_lock(root):
        scratch = root / "work"
        scratch.mkdir(parents=True, exist_ok=True)
        for comp in components(versions):
            if not wanted(comp, only, everything):
                continue
            build(comp, root)
            binaries.update({n: str(comp.binary_path(root, n)) for n in comp.packages})
        snap = versions["EXTERNAL_SNAPSHOTTER_VERSION"]
        client = module_info("github.com/kubernetes-csi/external-snapshotter/client/v8", snap, scratch)
        result["snapshot_crds"] = str(Path(client["Dir"]) / "config" / "crd")
        spec = module_info(
            "github.com/container-storage-interface/spec", versions["CSI_SPEC_VERSION"], scratch
        )
        result["csi_proto"] = str(Path(spec["Dir"]) / "csi.proto")
    result["binaries"] = binaries
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object with every path")
    parser.add_argument("--only", action="append", help="build only the component holding this binary")
    parser.add_argument("--all", action="store_true", help="also build the optional components (Velero)")
    parser.add_argument("--versions", type=Path, default=VERSIONS_FILE, help="the pinned versions file")
    args = parser.parse_args(argv)
    try:
        found = artifacts(
            read_versions(args.versions),
            cache_root(),
            set(args.only) if args.only else None,
            everything=args.all,
        )
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found))
    else:
        for name, path in sorted(dict(found["binaries"]).items()):  # type: ignore[call-overload]
            print(f"{name}\t{path}")
        print(f"snapshot-crds\t{found['snapshot_crds']}")
        print(f"csi.proto\t{found['csi_proto']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
