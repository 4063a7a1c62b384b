"""Regenerate SAS Desk's code-list files from the national Hub Santé nomenclatures.

Developer tool, not used at run time.  It reads the official CSV lists
(``../shared/reference/hub-sante/nomenclatures`` by default) and writes our own
JSON format into ``resources/codelists/``:

    {"name": ..., "source": ..., "codes": [
        {"code": ..., "label": ..., "parent": ..., "path": [...], "hint": ...}]}

``label`` is the label of the code's own level, ``path`` the labels from the
root down to it, ``hint`` the national description (shortened to one line).

Usage: python scripts/build_codelists.py [NOMENCLATURE_DIR]
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "resources" / "codelists"

# our list name -> (national list, our French title)
LISTS = {
    "priority": ("priorite", "Priorité ARM"),
    "care_level": ("niveauSoin", "Niveau de soins"),
    "attribution": ("attribution", "Attribution du dossier"),
    "branch": ("filiere", "Filière"),
    "motive": ("motif", "Motif de recours"),
    "caller_type": ("typeAppelant", "Type d'appelant"),
    "sex": ("sexe", "Sexe"),
    "decision_type": ("typeDecision", "Type de décision"),
    "resource_type": ("typeRessource", "Type de ressource"),
    "orientation_type": ("typeOrientation", "Type d'orientation"),
    "operator_role": ("role", "Rôle de l'opérateur"),
    "origin": ("origine", "Origine de l'appel"),
    "channel": ("canal", "Canal de l'appel"),
    "communication": ("communication", "Difficulté de communication"),
    "case_status": ("etat", "État du dossier"),
    "intervention_type": ("intervention", "Type d'intervention"),
}


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _parent(code: str, known: set[str]) -> str | None:
    # dotted codes (DRM.MRU.MU) and motif-style codes (M01.02 -> M01.00)
    m = re.fullmatch(r"(M\d\d)\.(\d\d)", code)
    if m:
        if m.group(2) == "00":
            return None
        parent = f"{m.group(1)}.00"
        return parent if parent in known else None
    if "." in code:
        parent = code.rsplit(".", 1)[0]
        return parent if parent in known else None
    return None


def convert(src: Path, name: str, title: str) -> dict[str, object]:
    with src.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0]
    label_cols = [
        i for i, h in enumerate(header) if h.startswith("label_n") or h.startswith("Libellé")
    ]
    desc_col = header.index("description")
    entries = []
    for row in rows[1:]:
        code = row[1].strip()
        # some national labels carry an editing mark ("#Conseil Médical"): not shown
        labels = [_one_line(row[i]).lstrip("#").strip() for i in label_cols if i < len(row)]
        entries.append((code, labels, _one_line(row[desc_col]) if desc_col < len(row) else ""))
    known = {c for c, _, _ in entries}
    by_code: dict[str, dict[str, object]] = {}
    codes = []
    for code, labels, desc in entries:
        own = next((lab for lab in reversed(labels) if lab), code)
        parent = _parent(code, known)
        path = [*by_code[parent]["path"], own] if parent else [own]  # type: ignore[misc]
        item: dict[str, object] = {"code": code, "label": own, "parent": parent, "path": path}
        if desc:
            item["hint"] = desc
        by_code[code] = item
        codes.append(item)
    return {
        "name": name,
        "title": title,
        "source": f"Nomenclature Hub Santé « {src.stem.removeprefix('HubSante.')} »",
        "codes": codes,
    }


def main() -> None:
    src_dir = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else ROOT.parent / "shared/reference/hub-sante/nomenclatures"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (national, title) in LISTS.items():
        data = convert(src_dir / f"HubSante.{national}.csv", name, title)
        (OUT / f"{name}.json").write_text(
            json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
        )
        print(f"{name}: {len(data['codes'])} codes")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
