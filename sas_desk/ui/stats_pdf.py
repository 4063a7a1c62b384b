"""The activity report as PDF (for the ARS): Qt's PDF writer, a text
document with the indicators' tables and a chart drawn with QPainter.

What goes in is what may leave the room: the export rows
(:func:`sas_desk.models.stats.export_rows`: counts and delays only, cells
below 11 shown as ``<11``, staff by role); a suppressed cell is drawn as
nothing in the chart (its height would give it away).  Needs a
QGuiApplication (offscreen is enough).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QMarginsF, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QPen,
    QTextDocument,
)

from sas_desk.models.stats import (
    BRANCH_LABELS,
    BRANCHES,
    DELAYS,
    Cell,
    DentalOrientation,
    Report,
    SnpOutcome,
    export_rows,
)

BRANCH_COLOURS = {"AMU": "#c62828", "SNP": "#1565c0", "DENT": "#2e7d32"}
CHART_URL = "sas://volumes.png"

#: (column, label) of the summary, in order
SUMMARY: tuple[tuple[str, str], ...] = (
    ("dossiers", "Dossiers"),
    ("filiere_amu", "dont AMU"),
    ("filiere_snp", "dont SNP"),
    ("filiere_dent", "dont dentaire"),
    ("priorite_p0", "Priorité P0"),
    ("priorite_p1", "Priorité P1"),
    ("priorite_p2", "Priorité P2"),
    ("priorite_p3", "Priorité P3"),
    ("priorite_nr", "Priorité non renseignée"),
    ("decides", "Dossiers avec décision"),
    ("part_mg_liberal_pct", "Part régulée par un MG libéral (%)"),
    ("snp_part_rdv_pris_pct", "Part SNP avec RDV pris (%)"),
)


def _cell(value: Cell) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.1f}".replace(".", ",")
    return html.escape(str(value))


def _seconds(value: Cell) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        minutes, seconds = divmod(value, 60)
        return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
    return _cell(value)


def _table(headers: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td align="{"left" if i == 0 else "right"}">{c}</td>' for i, c in enumerate(line)
        )
        + "</tr>"
        for line in lines
    )
    return (
        '<table border="1" cellspacing="0" cellpadding="3" width="100%">'
        f"<tr>{head}</tr>{body}</table>"
    )


def _count(value: Cell) -> float:
    """A chart's height: a suppressed cell draws nothing."""
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else 0.0


def volumes_chart(report: Report, width: int = 1600, height: int = 560) -> QImage:
    """Stacked bars of the dossiers by branch, one per row of ``report``
    (export rows: suppressed cells left out)."""
    rows = export_rows(report)
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    font = QFont("DejaVu Sans", 14)
    painter.setFont(font)
    left, right, top, bottom = 90, 20, 50, 70
    plot = QRectF(left, top, width - left - right, height - top - bottom)
    totals = [sum(_count(r[f"filiere_{b.lower()}"]) for b in BRANCHES) for r in rows]
    peak = max(totals, default=0.0) or 1.0
    step = _nice_step(peak)
    peak = step * (int(peak // step) + 1)
    painter.setPen(QPen(QColor("#bbbbbb"), 1))
    tick = 0.0
    while tick <= peak:
        y = plot.bottom() - plot.height() * tick / peak
        painter.drawLine(int(plot.left()), int(y), int(plot.right()), int(y))
        painter.setPen(QColor("#333333"))
        painter.drawText(
            QRectF(0, y - 12, left - 10, 24),
            int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter),
            f"{int(tick)}",
        )
        painter.setPen(QPen(QColor("#bbbbbb"), 1))
        tick += step
    n = max(1, len(rows))
    slot = plot.width() / n
    bar = max(1.0, slot * 0.75)
    label_every = max(1, int(n / 31) + (1 if n > 31 else 0))
    for i, row in enumerate(rows):
        x = plot.left() + i * slot + (slot - bar) / 2
        y = plot.bottom()
        for branch in BRANCHES:
            value = _count(row[f"filiere_{branch.lower()}"])
            h = plot.height() * value / peak
            painter.fillRect(QRectF(x, y - h, bar, h), QColor(BRANCH_COLOURS[branch]))
            y -= h
        if i % label_every == 0:
            painter.setPen(QColor("#333333"))
            painter.drawText(
                QRectF(x - 20, plot.bottom() + 4, bar + 40, 24),
                int(Qt.AlignmentFlag.AlignHCenter),
                _axis_label(str(row["periode"])),
            )
    painter.setPen(QColor("#222222"))
    painter.drawText(QRectF(left, 8, plot.width(), 30), 0, "Dossiers par filière")
    x = plot.right() - 420
    for branch in BRANCHES:
        painter.fillRect(QRectF(x, 14, 18, 18), QColor(BRANCH_COLOURS[branch]))
        painter.drawText(QRectF(x + 24, 10, 120, 26), 0, BRANCH_LABELS[branch])
        x += 140
    painter.end()
    return image


def _nice_step(peak: float) -> float:
    raw = peak / 5
    magnitude = 10 ** (len(str(int(raw))) - 1) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)  # pragma: no cover


def _axis_label(period: str) -> str:
    if len(period) == 10:  # a day: its number
        return period[8:10]
    if len(period) == 7:  # a month
        return f"{period[5:7]}/{period[2:4]}"
    return period[11:13] + "h"


def report_html(summary: Report, detail: Report, centre: str, made_at: datetime) -> str:
    """The report's text: the summary by month (indicators as lines), the
    delays, the SNP outcomes, the dental orientations, then the chart of
    ``detail`` (by day)."""
    months = export_rows(summary)
    heads = ["Indicateur", *(str(r["periode"]) for r in months)]
    first, last = summary.period.first, summary.period.last
    parts = [
        "<html><body style='font-family: DejaVu Sans; font-size: 9pt'>",
        f"<h2>Service d'accès aux soins — rapport d'activité</h2>"
        f"<p><b>{html.escape(centre)}</b> — du {first:%d/%m/%Y} au {last:%d/%m/%Y} "
        f"(fuseau {html.escape(summary.period.tz)}). Édité le {made_at:%d/%m/%Y à %H:%M}.</p>",
        "<p>Effectifs et délais seulement : aucune donnée nominative ; les effectifs de "
        "1 à 10 sont remplacés par « &lt;11 » (secret statistique), avec un effectif "
        "voisin quand un total permettrait de les retrouver.</p>",
        "<h3>Activité</h3>",
        _table(heads, [[label, *(_cell(r[c]) for r in months)] for c, label in SUMMARY]),
        "<h3>Délais (p50 / p90, part dans les délais)</h3>",
    ]
    lines = []
    for name, label in DELAYS:
        for suffix, what in (
            ("p50_s", "médiane"),
            ("p90_s", "90e centile"),
            ("dans_limite_pct", "dans le délai (%)"),
        ):
            column = f"delai_{name}_{suffix}"
            fmt = _seconds if suffix.endswith("_s") else _cell
            lines.append([f"{label} — {what}", *(fmt(r[column]) for r in months)])
        lines.append(
            [f"{label} — dossiers mesurés", *(_cell(r[f"delai_{name}_n"]) for r in months)]
        )
    parts.append(_table(heads, lines))
    parts.append("<h3>Devenir des dossiers SNP</h3>")
    parts.append(
        _table(
            heads,
            [[o.label, *(_cell(r[f"snp_{o.value.lower()}"]) for r in months)] for o in SnpOutcome],
        )
    )
    parts.append("<h3>Orientations dentaires</h3>")
    parts.append(
        _table(
            heads,
            [
                [o.label, *(_cell(r[f"dent_{o.value.lower()}"]) for r in months)]
                for o in DentalOrientation
            ],
        )
    )
    parts.append("<h3>Activité par rôle</h3>")
    roles = (
        ("arm_transmis", "Dossiers transmis par les ARM"),
        ("mru_decides", "Décisions des médecins urgentistes"),
        ("mrl_decides", "Décisions des médecins libéraux"),
        ("dent_decides", "Décisions des dentistes"),
        ("osnp_clotures", "Dossiers clos par les OSNP"),
    )
    parts.append(_table(heads, [[label, *(_cell(r[c]) for r in months)] for c, label in roles]))
    if "tel_presentes" in summary.columns:
        phone = (
            ("tel_presentes", "Appels présentés"),
            ("tel_decroches", "Appels décrochés"),
            ("tel_abandonnes", "Appels abandonnés"),
            ("tel_taux_decroche_pct", "Taux de décroché (%)"),
            ("tel_qs60_pct", "Qualité de service : décrochés en 60 s (%, objectif 99)"),
        )
        parts.append("<h3>Téléphonie</h3>")
        parts.append(_table(heads, [[label, *(_cell(r[c]) for r in months)] for c, label in phone]))
    parts.append(
        f"<h3>Volumes par {detail.by.label}</h3>"
        f'<p><img src="{CHART_URL}" width="640"></p>'
        "<p><i>Les effectifs inférieurs à 11 ne sont pas représentés.</i></p>"
    )
    parts.append("</body></html>")
    return "".join(parts)


def write_pdf(path: Path, summary: Report, detail: Report, centre: str, made_at: datetime) -> int:
    """The report as an A4 PDF at ``path``; returns its page count.  Raises
    OSError when the file cannot be written."""
    document = QTextDocument()
    document.addResource(
        QTextDocument.ResourceType.ImageResource, QUrl(CHART_URL), volumes_chart(detail)
    )
    document.setHtml(report_html(summary, detail, centre, made_at))
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = QPdfWriter(str(path))
    writer.setTitle("SAS — rapport d'activité")
    writer.setCreator("SAS Desk")
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(15, 15, 15, 15),
            QPageLayout.Unit.Millimeter,
        )
    )
    writer.setResolution(300)
    # laid out on an A4 page at 96 dpi (180 × 267 mm inside the margins),
    # then scaled to the writer's page
    document.setPageSize(QSizeF(180 / 25.4 * 96, 267 / 25.4 * 96))
    document.print_(writer)
    if not path.exists() or path.stat().st_size == 0:
        raise OSError(f"PDF non écrit : {path}")
    return int(document.pageCount())
