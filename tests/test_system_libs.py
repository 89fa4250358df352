"""packaging/check_system_libs.py: `make run` names every missing Qt system library and the one
command that installs them, before building anything."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_system_libs",
                                              ROOT / "packaging" / "check_system_libs.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def listing(*sonames: str) -> str:
    return "".join(f"\t{s} (libc6,x86-64) => /lib/x86_64-linux-gnu/{s}\n" for s in sonames)


def test_every_missing_library_is_named_not_only_the_first():
    have = [s for s in check.LIBS if s not in ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")]
    assert check.missing_libraries(listing(*have)) == ["libxcb-icccm.so.4",
                                                       "libxcb-keysyms.so.1"]
    assert check.missing_libraries(listing(*check.LIBS)) == []
    assert check.missing_libraries("") == []  # no ldconfig: no guessing


def test_one_install_command_per_distribution():
    missing = ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-randr.so.0"]
    assert check.install_command(missing, ["ubuntu", "debian"]) == (
        "sudo apt-get update && sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 "
        "libxcb-randr0")
    assert check.install_command(missing, ["debian"], root=True).startswith("apt-get update")
    assert check.install_command(missing, ["fedora"]) == (
        "sudo dnf install -y libxcb xcb-util-cursor xcb-util-wm")
    assert check.install_command(missing, ["gentoo"]) is None


def test_the_readme_lists_the_packages_for_each_distribution():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for column, name in enumerate(check.NAMES):
        assert name in readme
        for row in check.LIBS.values():
            assert row[column] in readme, (name, row[column])
