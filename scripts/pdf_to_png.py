"""Render the pages of a PDF to PNG with QtPdf (no poppler on the machine):

    python scripts/pdf_to_png.py RAPPORT.pdf OUT_PREFIX [--dpi 110]

Writes OUT_PREFIX-1.png, OUT_PREFIX-2.png…; prints their paths."""

from __future__ import annotations

import argparse
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("pdf")
    parser.add_argument("prefix")
    parser.add_argument("--dpi", type=int, default=110)
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtPdf import QPdfDocument

    app = QGuiApplication.instance() or QGuiApplication([])
    doc = QPdfDocument()
    doc.load(args.pdf)
    if doc.status() != QPdfDocument.Status.Ready:
        print(f"PDF illisible : {args.pdf}", file=sys.stderr)
        return 1
    for page in range(doc.pageCount()):
        size = doc.pagePointSize(page)
        scale = args.dpi / 72
        image = doc.render(page, (size * scale).toSize())
        path = f"{args.prefix}-{page + 1}.png"
        image.save(path)
        print(path)
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
