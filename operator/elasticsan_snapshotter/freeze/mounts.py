"""Where a target is mounted, found by the agent itself, and whether it is safe to freeze.

The operator names a target by (pod UID, PV name) only; the agent builds the path the kubelet
gives a CSI volume, ``<kubelet root>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount``, and
freezes it only when it is a file system of its own: a mount point, with no symlink on the
way, not block mode, and not the file system of the host root, of the kubelet root or of the
agent's journal (freezing any of those stalls the node, or the agent itself).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from elasticsan_snapshotter.domain.freeze import FreezeRefused, Target

CSI_PLUGIN_DIR = "kubernetes.io~csi"
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass(frozen=True)
class ResolvedMount:
    target: Target
    path: Path
    device: str
    """major:minor of the mounted file system."""


def device_of(st_dev: int) -> str:
    return f"{os.major(st_dev)}:{os.minor(st_dev)}"


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as octal escapes.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points(mountinfo: Path = MOUNTINFO) -> dict[str, str]:
    """Mount point → major:minor, the last mount on a point winning (it is the visible one)."""
    points: dict[str, str] = {}
    for line in mountinfo.read_text().splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points[_unescape(fields[4])] = fields[2]
    return points


def mount_of_device(device: str, mountinfo: Path = MOUNTINFO) -> Path | None:
    """Some mount point of ``device``, to thaw a file system whose recorded path is gone."""
    for point, dev in mount_points(mountinfo).items():
        if dev == device:
            return Path(point)
    return None


class MountResolver:
    """Resolves targets under one kubelet root, refusing any file system in ``protected``."""

    def __init__(self, kubelet_root: Path, protected: tuple[Path, ...], mountinfo: Path = MOUNTINFO) -> None:
        self.kubelet_root = Path(os.path.realpath(kubelet_root))
        self.mountinfo = mountinfo
        # The file systems of the host root, the kubelet root and the journal: never frozen.
        self.protected = {device_of(os.stat(p).st_dev): str(p) for p in (*protected, self.kubelet_root)}

    def path_of(self, target: Target) -> Path:
        return (
            self.kubelet_root
            / "pods"
            / target.pod_uid
            / "volumes"
            / CSI_PLUGIN_DIR
            / target.pv_name
            / "mount"
        )

    def resolve(self, target: Target) -> ResolvedMount:
        pod_dir = self.kubelet_root / "pods" / target.pod_uid
        if (pod_dir / "volumeDevices" / CSI_PLUGIN_DIR / target.pv_name).exists():
            raise FreezeRefused(
                f"{target.pv_name} is a block-mode volume of pod {target.pod_uid}; it has no file system to freeze"
            )
        path = self.path_of(target)
        real = Path(os.path.realpath(path))
        if real != path:
            where = "outside the kubelet root" if not real.is_relative_to(self.kubelet_root) else "elsewhere"
            raise FreezeRefused(f"{path} resolves through a symlink to {real}, {where}; refused")
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise FreezeRefused(
                f"pod {target.pod_uid} does not mount {target.pv_name} on this node ({path} is missing)"
            ) from None
        if stat.S_ISBLK(info.st_mode):
            raise FreezeRefused(
                f"{path} is a block device (block-mode volume); it has no file system to freeze"
            )
        if not stat.S_ISDIR(info.st_mode):
            raise FreezeRefused(f"{path} is not a directory")
        device = device_of(info.st_dev)
        protected = self.protected.get(device)
        if protected is not None:
            raise FreezeRefused(
                f"{path} is on the file system of {protected}; freezing it would stall the node"
            )
        mounted = mount_points(self.mountinfo).get(str(path))
        if mounted is None:
            raise FreezeRefused(f"{path} is not a mount point, so not a separate file system")
        if mounted != device:
            raise FreezeRefused(f"{path} is mounted from {mounted} but shows {device}; refused")
        return ResolvedMount(target, path, device)


__all__ = ["CSI_PLUGIN_DIR", "MountResolver", "ResolvedMount", "device_of", "mount_of_device", "mount_points"]
