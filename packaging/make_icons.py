"""Render packaging/icons/rlhf-desk.svg to the icon files the app and its packages use.

    python packaging/make_icons.py

writes, from the SVG (the source of truth):
  packaging/icons/rlhf-desk-{256,128,64,48}.png   Linux menus (hicolor theme), AppStream
  packaging/icons/rlhf-desk.ico                   Windows (PNG-compressed, 16 to 256 px)
  packaging/icons/rlhf-desk.icns                  macOS (PNG entries, 16 to 1024 px)
  resources/icons/rlhf-desk-{256,128,64,48}.png   the window icon (shipped in wheels and builds)

Needs only PySide6 (QtSvg). The outputs are committed; run it again after editing the SVG.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HERE = Path(__file__).resolve().parent
SVG = HERE / "icons" / "rlhf-desk.svg"
PNG_SIZES = (256, 128, 64, 48)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# ICNS entry types that hold PNG data, by pixel size (the @2x types double a point size).
ICNS_TYPES = ((b"icp4", 16), (b"icp5", 32), (b"icp6", 64), (b"ic07", 128), (b"ic08", 256),
              (b"ic09", 512), (b"ic10", 1024), (b"ic11", 32), (b"ic12", 64), (b"ic13", 256),
              (b"ic14", 512))


def render_png(renderer, size: int) -> bytes:
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QImage, QPainter, Qt

    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


def ico(pngs: dict[int, bytes]) -> bytes:
    """An .ico whose entries are PNG images (read by Windows Vista and later)."""
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = 6 + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, png in sorted(pngs.items()):
        dim = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    return header + entries + blobs


def icns(pngs: dict[int, bytes]) -> bytes:
    body = b"".join(kind + struct.pack(">I", 8 + len(pngs[size])) + pngs[size]
                    for kind, size in ICNS_TYPES)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main() -> int:
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - fonts, plugins
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"cannot read {SVG}", file=sys.stderr)
        return 1
    sizes = sorted(set(PNG_SIZES) | set(ICO_SIZES) | {size for _, size in ICNS_TYPES})
    pngs = {size: render_png(renderer, size) for size in sizes}
    resources = HERE.parent / "resources" / "icons"
    resources.mkdir(parents=True, exist_ok=True)
    for size in PNG_SIZES:
        for folder in (HERE / "icons", resources):
            (folder / f"rlhf-desk-{size}.png").write_bytes(pngs[size])
    (HERE / "icons" / "rlhf-desk.ico").write_bytes(ico({s: pngs[s] for s in ICO_SIZES}))
    (HERE / "icons" / "rlhf-desk.icns").write_bytes(icns(pngs))
    print(f"wrote {len(PNG_SIZES)} PNGs to {HERE / 'icons'} and {resources}, "
          "rlhf-desk.ico, rlhf-desk.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
