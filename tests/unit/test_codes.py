"""Code lists (nomenclatures): loading, lookups and type-ahead search."""

from __future__ import annotations

import re

import pytest

from sas_desk.models.codes import LIST_NAMES, Code, CodeList, codelist, fold

# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("name", LIST_NAMES)
def test_list_loads_non_empty_with_unique_codes(name: str) -> None:
    lst = codelist(name)
    assert lst.name == name
    assert lst.title.strip()
    assert len(lst) > 0
    codes = [c.code for c in lst]
    assert len(codes) == len(set(codes)), f"duplicate codes in {name}"
    for c in lst:
        assert c.code.strip() == c.code != ""
        assert c.label.strip()
        assert c.path, "every code has at least its own label as path"
        assert c.path[-1] == c.label
        assert c in lst.codes
        assert c.code in lst
        assert lst.get(c.code) is c


@pytest.mark.parametrize("name", LIST_NAMES)
def test_parents_exist_and_paths_follow_them(name: str) -> None:
    lst = codelist(name)
    for c in lst:
        if c.parent is None:
            assert len(c.path) == 1
            continue
        parent = lst.get(c.parent)
        assert parent is not None, f"{name}: {c.code} has unknown parent {c.parent}"
        assert c.path[: len(parent.path)] == parent.path
        assert len(c.path) == len(parent.path) + 1


def test_codelist_is_cached() -> None:
    assert codelist("priority") is codelist("priority")


def test_unknown_list_raises() -> None:
    with pytest.raises(FileNotFoundError):
        codelist("no_such_list")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("priority", ["P0", "P1", "P2", "P3", "NR"]),
        ("care_level", ["R1", "R2", "R3", "R4"]),
        ("decision_type", ["CONSEIL", "PMT", "INTER", "ORIENT", "PASPLUS"]),
    ],
)
def test_exact_lists(name: str, expected: list[str]) -> None:
    assert [c.code for c in codelist(name)] == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("attribution", {"DRM.MRU.MU", "DRM.MRL.MG", "DRM.SPE.DENT"}),
        ("branch", {"AMU", "SNP"}),
        ("sex", {"M", "F", "O", "UN"}),
        ("origin", {"15", "112", "116117"}),
        ("operator_role", {"ARM", "MEDECIN", "INCONNU"}),
        ("channel", {"PERSONNE"}),
    ],
)
def test_expected_codes_present(name: str, expected: set[str]) -> None:
    lst = codelist(name)
    assert expected <= {c.code for c in lst}
    for code in expected:
        assert code in lst


def test_sex_list_is_exactly_four_codes() -> None:
    assert {c.code for c in codelist("sex")} == {"M", "F", "O", "UN"}


def test_attribution_hierarchy() -> None:
    lst = codelist("attribution")
    assert lst.get("DRM.MRU.MU").parent == "DRM.MRU"  # type: ignore[union-attr]
    assert lst.get("DRM.MRL.MG").parent == "DRM.MRL"  # type: ignore[union-attr]
    assert lst.get("DRM.SPE.DENT").parent == "DRM.SPE"  # type: ignore[union-attr]
    assert lst.get("DRM").parent is None  # type: ignore[union-attr]


# --------------------------------------------------------------------------- motive

MOTIVE_RE = re.compile(r"^M\d{2}\.\d{2}$")


def test_motive_has_52_codes() -> None:
    motive = codelist("motive")
    assert len(motive) == 52
    assert all(MOTIVE_RE.match(c.code) for c in motive)


def test_motive_parent_links() -> None:
    motive = codelist("motive")
    for c in motive:
        group = c.code[:3] + ".00"
        if c.code.endswith(".00"):
            assert c.parent is None, c.code
        else:
            assert c.parent == group, c.code
    assert motive.get("M03.06").parent == "M03.00"  # type: ignore[union-attr]
    assert motive.get("M01.01").parent == "M01.00"  # type: ignore[union-attr]


def test_motive_leaves_exclude_parents() -> None:
    motive = codelist("motive")
    leaves = motive.leaves()
    codes = {c.code for c in leaves}
    parents = {c.parent for c in motive if c.parent}
    assert not codes & parents
    assert "M03.06" in codes
    assert "M03.00" not in codes
    # a group without children (M07.00) is itself a leaf
    assert "M07.00" in codes
    assert len(leaves) == 52 - len(parents)


def test_full_label() -> None:
    motive = codelist("motive")
    assert motive.get("M03.06").full_label == "Problème médical; Douleur thoracique"  # type: ignore[union-attr]
    assert motive.get("M03.00").full_label == "Problème médical"  # type: ignore[union-attr]
    assert Code("X", "Libellé").full_label == "Libellé"
    assert Code("X", "C", path=("A", "B", "C")).full_label == "A; B; C"


def test_label_of_known_and_unknown_codes() -> None:
    motive = codelist("motive")
    assert motive.label("M03.06") == "Douleur thoracique"
    assert motive.label("M99.99") == "M99.99"
    assert motive.label("") == ""
    assert motive.get("M99.99") is None
    assert "M99.99" not in motive
    assert 42 not in motive
    assert None not in motive


# --------------------------------------------------------------------------- search


def codes_of(result: list[Code]) -> list[str]:
    return [c.code for c in result]


def test_search_by_code_prefix() -> None:
    result = codes_of(codelist("motive").search("M03.0"))
    assert result == [f"M03.{i:02d}" for i in range(10)]


def test_search_by_code_prefix_is_case_insensitive() -> None:
    assert codes_of(codelist("motive").search("m03.06")) == ["M03.06"]


def test_search_code_matches_come_first() -> None:
    result = codes_of(codelist("attribution").search("DRM.SPE"))
    assert result[0] == "DRM.SPE"
    assert all(code.startswith("DRM.SPE") for code in result)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("avc", {"M03.07", "M03.08"}),
        ("AVC", {"M03.07", "M03.08"}),
        ("douleur thor", {"M03.06"}),
        ("Douleur Thoracique", {"M03.06"}),
        ("brulure", {"M02.04", "M02.05"}),
        ("brûlure", {"M02.04", "M02.05"}),
        ("BRÛLURE", {"M02.04", "M02.05"}),
        ("fievre", {"M03.14"}),
        ("d'avc", {"M03.08"}),
        ("d’avc", {"M03.08"}),
    ],
)
def test_search_words_accent_insensitive(query: str, expected: set[str]) -> None:
    assert set(codes_of(codelist("motive").search(query))) == expected


def test_search_every_word_must_match() -> None:
    motive = codelist("motive")
    assert codes_of(motive.search("douleur thoracique")) == ["M03.06"]
    assert motive.search("douleur xyzzy") == []
    assert motive.search("xyzzy") == []


def test_search_matches_the_hint() -> None:
    # "s'étouffe" is only in the hint of "Détresse respiratoire"
    assert codes_of(codelist("motive").search("etouffe")) == ["M01.03"]


def test_search_matches_parent_labels() -> None:
    result = codes_of(codelist("motive").search("blessure"))
    assert result[0] == "M02.00"
    assert set(result) == {c.code for c in codelist("motive") if c.code.startswith("M02.")}


def test_search_ranks_label_words_before_hint_matches() -> None:
    motive = codelist("motive")
    result = codes_of(motive.search("douleur"))
    assert result[-1] == "M02.04"  # found only in its hint ("insensible à la douleur")
    assert "M03.06" in result[:-1]
    # an elided word ("de l’état général") counts as a label word
    assert codes_of(motive.search("etat"))[0] == "M05.02"


def test_search_empty_query_returns_leaves() -> None:
    motive = codelist("motive")
    leaves = motive.leaves()
    assert motive.search("") == list(leaves[:20])
    assert motive.search("   ") == list(leaves[:20])
    assert motive.search("", limit=100) == list(leaves)
    assert all(c.parent is not None or c.code == "M07.00" for c in motive.search("", limit=100))


@pytest.mark.parametrize("limit", [0, 1, 3, 5])
def test_search_limit(limit: int) -> None:
    motive = codelist("motive")
    assert len(motive.search("M0", limit=limit)) == limit
    assert len(motive.search("", limit=limit)) == limit
    assert motive.search("M0", limit=limit) == motive.search("M0", limit=100)[:limit]


def test_search_default_limit_is_20() -> None:
    assert len(codelist("motive").search("M")) == 20


def test_codelist_built_by_hand() -> None:
    lst = CodeList(
        "demo",
        "Démo",
        (Code("A", "Alpha"), Code("A.1", "Élan", parent="A", path=("Alpha", "Élan"))),
    )
    assert len(lst) == 2
    assert [c.code for c in lst] == ["A", "A.1"]
    assert lst.label("A.1") == "Élan"
    assert codes_of(lst.search("elan")) == ["A.1"]
    assert codes_of(lst.leaves()) == ["A.1"]


# --------------------------------------------------------------------------- fold


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Brûlure", "brulure"),
        ("ÉTAT Général", "etat general"),
        ("  Douleur   thoracique  ", "douleur thoracique"),
        ("Signes d’AVC", "signes d'avc"),
        ("ça", "ca"),
        ("Noël\tà\nNoël", "noel a noel"),
        ("", ""),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


@pytest.mark.parametrize("name", LIST_NAMES)
def test_labels_carry_no_editing_mark(name: str) -> None:
    """Issue 14 §17: « ORIENT — #Orientation Transport » shown to the regulator."""
    for code in codelist(name):
        assert not code.label.startswith("#"), (name, code.code, code.label)
        assert not any(part.startswith("#") for part in code.path), (name, code.code)
