#!/usr/bin/env python3
"""Before anything is built: does this Linux machine have the system libraries Qt's window
system plugin (xcb) needs? ``make run`` calls this first, with the system's python3 and only
the standard library.

Qt's own message names only the first missing library, after minutes of installing, so this
checks the whole set (what PySide6's libqxcb.so links against, found with ldd) and prints the
one command that installs every missing one on this distribution. Exit 1 when something is
missing; ``--list`` prints the install command for every distribution (the README's table).
Not Linux, or nothing missing: exit 0 silently.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

# soname -> package on Debian/Ubuntu, Fedora/RHEL, Arch, openSUSE.
LIBS = {
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb", "libxcb1"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11", "libX11-xcb1"),
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor",
                           "libxcb-cursor0"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm", "libxcb-icccm4"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image",
                          "libxcb-image0"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms",
                            "libxcb-keysyms1"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb", "libxcb-randr0"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil",
                                "xcb-util-renderutil", "libxcb-render-util0"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb", "libxcb-shape0"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb", "libxcb-xfixes0"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb", "libxcb-xkb1"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb", "libxcb-sync1"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb", "libxcb-shm0"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon", "libxkbcommon0"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11",
                              "libxkbcommon-x11-0"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd", "libEGL1"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd", "libGL1"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig", "libfontconfig1"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus", "libdbus-1-3"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libglib-2_0-0"),
}
MANAGERS = (  # (os-release ids, install command prefix, index into LIBS' tuples)
    (("debian", "ubuntu", "linuxmint", "pop", "raspbian"),
     "sudo apt-get update && sudo apt-get install -y", 0),
    (("fedora", "rhel", "centos", "rocky", "almalinux"), "sudo dnf install -y", 1),
    (("arch", "manjaro", "endeavouros"), "sudo pacman -S --needed", 2),
    (("opensuse", "suse", "opensuse-leap", "opensuse-tumbleweed", "sles"),
     "sudo zypper install -y", 3),
)
NAMES = ("Debian / Ubuntu", "Fedora / RHEL", "Arch", "openSUSE")


def known_libraries() -> str:
    """``ldconfig -p``: every shared library the dynamic linker can find."""
    for ldconfig in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            return subprocess.run([ldconfig, "-p"], capture_output=True, text=True,
                                  check=False).stdout
        except OSError:
            continue
    return ""


def missing_libraries(listing: str) -> list[str]:
    if not listing:
        return []  # cannot tell (no ldconfig): say nothing rather than something wrong
    return [soname for soname in LIBS if soname not in listing]


def distribution_ids() -> list[str]:
    try:
        text = open("/etc/os-release", encoding="utf-8").read()  # noqa: SIM115
    except OSError:
        return []
    ids: list[str] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids += value.strip().strip('"').lower().split()
    return ids


def install_command(missing: list[str], ids: list[str], root: bool = False) -> str | None:
    for names, prefix, column in MANAGERS:
        if any(i in names for i in ids):
            packages = sorted({LIBS[soname][column] for soname in missing})
            if root:  # root needs no sudo (and a bare container may not have it)
                prefix = prefix.replace("sudo ", "")
            return f"{prefix} {' '.join(packages)}"
    return None


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for name, (_, prefix, column) in zip(NAMES, MANAGERS):
            packages = sorted({row[column] for row in LIBS.values()})
            print(f"{name}:\n  {prefix} {' '.join(packages)}")
        return 0
    if platform.system() != "Linux":
        return 0
    missing = missing_libraries(known_libraries())
    if not missing:
        return 0
    print("RLHF Desk's window (Qt) needs system libraries this machine does not have:\n  "
          + "\n  ".join(missing), file=sys.stderr)
    command = install_command(missing, distribution_ids(), root=os.geteuid() == 0)
    if command:
        print(f"Install them with:\n  {command}\nthen run 'make run' again.", file=sys.stderr)
    else:
        print("Install them with your package manager (the README lists the packages per "
              "distribution), then run 'make run' again.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
