"""Packaging: resources are found in a frozen build, an installed wheel and the source tree; the
wheel's package list is complete; the icon, desktop entry, AppStream metainfo and PyInstaller
spec agree with each other and with the code. (packaging/build.sh builds and smoke-tests the
real frozen app; it takes minutes, so it is run by hand or by `make package`, not here.)"""

import ast
import struct
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from desktop_app import __version__
from desktop_app.core import resources

ROOT = Path(__file__).resolve().parents[1]
PACKAGING = ROOT / "packaging"
APP_ID = "io.github.rlhfdesk.RLHFDesk"


# ---- resources -------------------------------------------------------------------------------

def _resource_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / resources.MARKER).write_text("hello\n", encoding="utf-8")
    return path


def test_frozen_then_installed_then_source_tree(tmp_path):
    frozen = tmp_path / "meipass"
    candidates = resources.candidate_dirs(str(frozen))
    assert candidates == [frozen / "desktop_app" / "_resources",
                          resources.PACKAGE_DIR / "_resources",
                          resources.PACKAGE_DIR.parent / "resources"]
    # Not frozen: no _MEIPASS candidate.
    assert resources.candidate_dirs("") == candidates[1:]

    meipass, installed, source = (tmp_path / "a", tmp_path / "b", tmp_path / "c")
    order = [meipass, installed, source]
    assert resources.find_resources_dir(order) == source  # none exists: the last, for the error
    _resource_dir(source)
    assert resources.find_resources_dir(order) == source
    _resource_dir(installed)
    assert resources.find_resources_dir(order) == installed
    _resource_dir(meipass)
    assert resources.find_resources_dir(order) == meipass


def test_frozen_build_is_looked_up_through_meipass(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.candidate_dirs()[0] == tmp_path / "desktop_app" / "_resources"


def test_the_source_tree_resources_are_found_here():
    assert resources.RESOURCES_DIR == ROOT / "resources"
    assert resources.resource_path("demo_corpus.jsonl").is_file()
    assert resources.icon_path() == ROOT / "resources" / "icons" / "rlhf-desk-256.png"
    with pytest.raises(FileNotFoundError, match="reinstall"):
        resources.resource_path("no-such-file.txt")


def test_wheel_lists_every_package_and_maps_resources():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "desktop_app").rglob("__init__.py")}
    listed = set(config["packages"])
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to pyproject.toml's packages"
    assert config["package-dir"]["desktop_app._resources"] == "resources"
    patterns = config["package-data"]["desktop_app._resources"]
    shipped = {p.relative_to(ROOT / "resources") for p in (ROOT / "resources").rglob("*")
               if p.is_file()}
    missing = [p for p in shipped if not any(p.match(pattern) for pattern in patterns)]
    assert not missing, f"resources not shipped in the wheel: {missing}"


# ---- icon ------------------------------------------------------------------------------------

def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("size", [256, 128, 64, 48])
def test_icon_pngs_are_rendered_at_their_size(size):
    packaged = PACKAGING / "icons" / f"rlhf-desk-{size}.png"
    shipped = ROOT / "resources" / "icons" / f"rlhf-desk-{size}.png"
    assert _png_size(packaged) == (size, size)
    assert shipped.read_bytes() == packaged.read_bytes()  # make_icons.py writes both


def test_icon_svg_ico_and_icns():
    root = ET.parse(PACKAGING / "icons" / "rlhf-desk.svg").getroot()
    assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 256 256"
    ico = (PACKAGING / "icons" / "rlhf-desk.ico").read_bytes()
    assert struct.unpack("<HHH", ico[:6])[:2] == (0, 1) and struct.unpack("<H", ico[4:6])[0] >= 5
    icns = (PACKAGING / "icons" / "rlhf-desk.icns").read_bytes()
    assert icns[:4] == b"icns" and struct.unpack(">I", icns[4:8])[0] == len(icns)


def test_window_icon_is_set(qapp):
    from desktop_app.gui.app import APP_ID as app_id
    from desktop_app.gui.app import create_app

    app = create_app()
    assert not app.windowIcon().isNull()
    assert {s.width() for s in app.windowIcon().availableSizes()} >= {48, 256}
    assert app_id == APP_ID


# ---- desktop entry and AppStream -------------------------------------------------------------

def test_desktop_entry_matches_the_metainfo():
    text = (PACKAGING / f"{APP_ID}.desktop").read_text(encoding="utf-8")
    entry = dict(line.split("=", 1) for line in text.splitlines()[1:] if "=" in line)
    assert text.startswith("[Desktop Entry]\n")
    assert entry["Type"] == "Application" and entry["Exec"] == "rlhf-desk"
    assert entry["Icon"] == "rlhf-desk" and entry["Name"] == "RLHF Desk"
    assert entry["Categories"].endswith(";")
    assert not list(PACKAGING.glob("rlhf-desk.desktop"))  # one desktop file, named by the id


def test_metainfo_is_complete():
    root = ET.parse(PACKAGING / f"{APP_ID}.metainfo.xml").getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == APP_ID
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == "Apache-2.0"
    assert root.findtext("name") == "RLHF Desk"
    assert root.findtext("summary") and not root.findtext("summary").endswith(".")
    assert root.find("description/p") is not None
    launchable = root.find("launchable")
    assert launchable.get("type") == "desktop-id" and launchable.text == f"{APP_ID}.desktop"
    assert (PACKAGING / launchable.text).is_file()
    assert root.find("content_rating").get("type").startswith("oars-")
    assert root.findtext("provides/binary") == "rlhf-desk"
    releases = root.findall("releases/release")
    assert releases and releases[0].get("version") == __version__
    images = [s.findtext("image") for s in root.findall("screenshots/screenshot")]
    assert images and all(i.startswith("https://") for i in images)
    for image in images:  # each points at a screenshot that exists in docs/
        assert (ROOT / "docs" / image.rsplit("/docs/", 1)[1]).is_file(), image


# ---- PyInstaller spec and build script -------------------------------------------------------

def test_spec_is_portable_python():
    source = (PACKAGING / "rlhf-desk.spec").read_text(encoding="utf-8")
    ast.parse(source)
    assert "SPECPATH" in source and "/work/" not in source and ":\\\\" not in source
    for needed in ("copy_metadata", "collect_data_files", "transformers.models", "resources",
                   "desktop_app/_resources", ".ico", ".icns", "console=", "tkinter"):
        assert needed in source, needed
    assert (PACKAGING / "rlhf_desk_main.py").is_file()


def test_build_script_and_make_target():
    script = (PACKAGING / "build.sh").read_text(encoding="utf-8")
    assert script.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in script
    assert 'TORCH="${TORCH:-torch==2.13.0}"' in script
    assert "--smoke-test" in script and "--version" in script
    assert (PACKAGING / "build.sh").stat().st_mode & 0o111
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "\npackage:" in makefile and "packaging/build.sh" in makefile
    assert "package" in next(line for line in makefile.splitlines()
                             if line.startswith(".PHONY"))
