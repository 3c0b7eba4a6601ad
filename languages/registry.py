"""The language registry: `xxx_Scrp` labels (ISO 639-3 + ISO 15924) and the normalisation of every LID label style.

Source: languages/data/languages.csv, derived from FineWeb-2's language table (Apache-2.0; words, documents and bytes
of its train split per label) plus the languages mmBERT trains on that FineWeb-2 lacks (English, …) with zero counts.

`normalize` makes labels from different LID models meet in one code:
    lid.176      __label__en, __label__zh, __label__ceb       → eng_Latn, cmn_Hani, ceb_Latn
    GlotLID      __label__eng_Latn                            → eng_Latn
    BCP-47       sr-Latn, zh-Hant, pt-BR                      → srp_Latn, cmn_Hani, por_Latn
    ISO 639-1/2/3 en, fre, ara                                → eng_Latn, fra_Latn, arb_Arab
Macrolanguages become the individual language FineWeb-2 and mmBERT use: the macrolanguage itself when the registry
has it (`fas`), else its member with the most FineWeb-2 data (`zho` → `cmn`, `ara` → `arb`, `est` → `ekk`), except
where that rule picks the wrong member (MACROLANGUAGE_OVERRIDES). Code data (which code is a macrolanguage, its
members, BCP-47 parsing, likely scripts) comes from iso639-lang and langcodes, not from hand-typed tables.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import langcodes
from iso639 import Lang
from iso639.exceptions import DeprecatedLanguageValue, InvalidLanguageValue

from languages.scripts import NEUTRAL_SCRIPTS

DATA_FILE = Path(__file__).parent / "data" / "languages.csv"
SOURCE_CODE_LABEL = "code"  # mmBERT trains on source code as a "language" of its own

# The member-with-most-data rule would pick Indonesian for Malay (msa); lid.176's `ms` and mmBERT mean Standard Malay.
MACROLANGUAGE_OVERRIDES = {"msa": "zsm"}
# lid.176 uses Wikipedia's language codes, a few of which are not what ISO says they are (applied to `__label__xx`).
# (`eml` and `nah` stay: FineWeb-2 and mmBERT label Emilian-Romagnol and Nahuatl with those codes too.)
LID176_QUIRKS = {
    "als": "gsw",  # Alemannic Wikipedia, not Tosk Albanian
    "bh": "bho",  # "Bihari" Wikipedia is written in Bhojpuri
    "mo": "ron",  # Moldavian
    "ku": "kmr",  # Kurmanji Wikipedia (Central Kurdish is `ckb`); in Arabic script, SCRIPT_VARIANTS makes it ckb
}
# Languages ISO splits by the script they are written in: (code, the text's script) → the code of that script's
# variety, where the registry has no label for the pair (FineWeb-2 has pnb_Arab, not pan_Arab).
SCRIPT_VARIANTS = {
    ("pan", "Arab"): "pnb", ("pnb", "Guru"): "pan",  # Punjabi: Gurmukhi in India, Shahmukhi in Pakistan
    ("azb", "Latn"): "azj", ("azb", "Cyrl"): "azj", ("azj", "Arab"): "azb",  # Azerbaijani
    ("uzs", "Latn"): "uzn", ("uzs", "Cyrl"): "uzn", ("uzn", "Arab"): "uzs",  # Uzbek
    ("kmr", "Arab"): "ckb",  # Kurdish in Arabic script is Sorani (Sorani in Latin script, as the UDHR has it, stays)
    ("tgk", "Arab"): "fas", ("fas", "Cyrl"): "tgk",  # Tajik is Persian in Cyrillic
}
# CLDR's likely script for Chinese is Hans/Hant; FineWeb-2 labels all Han text Hani (and Japanese Jpan, Korean Hang).
SCRIPT_ALIASES = {"Hans": "Hani", "Hant": "Hani", "Kore": "Hang"}
# FineWeb-2's combined codes and the scripts whose text they cover.
COMBINED_SCRIPTS = {"Jpan": ("Hani", "Hira", "Kana"), "Hang": ("Hani",)}

_LABEL_PREFIX = re.compile(r"^__label__", re.IGNORECASE)
_REGISTRY_LABEL = re.compile(r"^([a-z]{3})_([A-Z][a-z]{3})$")
_SCRIPT_SUBTAG = re.compile(r"[-_][A-Za-z]{4}(?=[-_]|$)")  # BCP-47: a script is the only 4-letter subtag


class UnknownLanguage(ValueError):
    """A label that names no language the registry (or ISO 639-3) knows."""


@dataclass(frozen=True)
class Language:
    code: str  # registry label, e.g. "eng_Latn"
    iso639_3: str
    script: str
    name: str
    family: str
    words: int  # FineWeb-2 train split (0 where FineWeb-2 has no data)
    documents: int
    bytes: int


@lru_cache(maxsize=1)
def _table() -> dict[str, Language]:
    with DATA_FILE.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    table = {
        row["code"]: Language(row["code"], row["iso639_3"], row["script"], row["name"], row["family"],
                              int(row["words"]), int(row["documents"]), int(row["bytes"]))
        for row in rows
    }
    table[SOURCE_CODE_LABEL] = Language(SOURCE_CODE_LABEL, "zxx", "Zyyy", "Source code", "", 0, 0, 0)
    return table


@lru_cache(maxsize=1)
def _scripts_by_iso() -> dict[str, list[str]]:
    """ISO 639-3 code → its registry scripts, the one with the most words first."""
    by_iso: dict[str, list[Language]] = {}
    for language in _table().values():
        if language.code == SOURCE_CODE_LABEL:  # `code` is a label of its own, not ISO's zxx ("no linguistic content")
            continue
        by_iso.setdefault(language.iso639_3, []).append(language)
    return {iso: [l.script for l in sorted(langs, key=lambda l: (-l.words, l.script))] for iso, langs in by_iso.items()}


def scripts_of(label: str) -> list[str]:
    """The scripts the registry has the label's language in (FineWeb-2's, the one with the most words first)."""
    return list(_scripts_by_iso().get(normalize(label).split("_")[0], []))


def all_languages() -> list[Language]:
    """Every registry language (source code included), sorted by label."""
    return sorted(_table().values(), key=lambda language: language.code)


def get(label: str) -> Language:
    """The registry entry for `label` (any label style; see `normalize`)."""
    code = normalize(label)
    table = _table()
    if code in table:
        return table[code]
    iso, script = code.split("_")  # a valid ISO 639-3 code in a script FineWeb-2 has no data for
    return Language(code, iso, script, Lang(iso).name, "", 0, 0, 0)


@lru_cache(maxsize=16384)
def _individual_code(iso: str) -> str:
    """Map a macrolanguage to the individual language the registry uses (the member with the most data); a retired
    code to its successor; other codes pass through."""
    known = _scripts_by_iso()
    if iso in known:
        return iso
    if iso in MACROLANGUAGE_OVERRIDES:
        return MACROLANGUAGE_OVERRIDES[iso]
    try:
        lang = Lang(iso)
    except DeprecatedLanguageValue as error:
        if error.change_to:  # merged or renamed: text labelled with the old code (GlotLID's ajp_Arab) is the new one's
            return _individual_code(error.change_to)
        raise UnknownLanguage(f"deprecated language code {iso!r}: {error}") from None
    except InvalidLanguageValue:
        raise UnknownLanguage(f"unknown language code {iso!r}") from None
    if lang.scope() == "Special":  # und, mul, zxx, mis: no language to train on
        raise UnknownLanguage(f"{iso!r} names no language ({lang.name})")
    # A code the registry spells otherwise (`tgl` → `fil`, as CLDR), or a member of a macrolanguage the registry
    # keeps whole (`pes`, `prs` → `fas`): text labelled either way must meet under the registry's label.
    alias = langcodes.Language.get(iso).to_alpha3()
    macro = lang.macro().pt3 if lang.macro() else None
    for candidate in (alias, macro):
        if candidate in known:
            return candidate
    members = [member.pt3 for member in lang.individuals()] if lang.scope() == "Macrolanguage" else []
    members = [m for m in members if m in known]
    if members:  # (`normalize` then moves it to the variety of the text's script: SCRIPT_VARIANTS)
        return max(members, key=lambda m: (_words(m), m))
    return lang.pt3 or iso


def _variant(iso: str, script: str | None) -> str:
    """The code of the language's variety written in `script` (SCRIPT_VARIANTS), where the registry has no label
    for `iso` in that script; `iso` otherwise."""
    hint = SCRIPT_ALIASES.get(script or "", script)
    written_so = any(hint == s or hint in COMBINED_SCRIPTS.get(s, ()) for s in _scripts_by_iso().get(iso, []))
    if not hint or hint in NEUTRAL_SCRIPTS or written_so:
        return iso
    return SCRIPT_VARIANTS.get((iso, hint), iso)


def _words(iso: str) -> int:
    return sum(language.words for language in _table().values() if language.iso639_3 == iso)


def _pick_script(iso: str, script: str | None, fallback: str | None) -> str:
    """The script a label gets: the text's own (`script`) when known, else the language's main script."""
    scripts = _scripts_by_iso().get(iso, [])
    hint = SCRIPT_ALIASES.get(script or "", script)
    if hint and hint not in NEUTRAL_SCRIPTS:
        for combined in scripts:  # kanji-only Japanese is still jpn_Jpan, hanja in Korean kor_Hang
            if hint in COMBINED_SCRIPTS.get(combined, ()):
                return combined
        return hint  # the text's script is a fact; a language's LID label is a guess: French in Cyrillic stays apart
    if scripts:
        return scripts[0]
    return SCRIPT_ALIASES.get(fallback or "", fallback) or "Latn"


@lru_cache(maxsize=65536)
def normalize(label: str, script: str | None = None) -> str:
    """Any LID / ISO 639 / BCP-47 label → registry label `xxx_Scrp`. `script` picks among a language's scripts.

    Raises UnknownLanguage for a label no ISO 639 code matches.
    """
    fasttext = bool(_LABEL_PREFIX.match(label.strip()))
    raw = _LABEL_PREFIX.sub("", label.strip())
    if not raw:
        raise UnknownLanguage(f"empty language label {label!r}")
    if script is not None:
        script = _checked_script(script)
    if raw.lower() == SOURCE_CODE_LABEL:
        return SOURCE_CODE_LABEL
    match = _REGISTRY_LABEL.match(raw)
    if match:  # GlotLID / FineWeb-2 style: language and script given
        label_script = _checked_script(match.group(2))
        iso = _variant(_individual_code(match.group(1)), label_script)
        return f"{iso}_{_pick_script(iso, label_script, label_script)}"
    if fasttext:  # only fastText labels use Wikipedia's codes; ISO 639-3 `als` is Tosk Albanian
        raw = LID176_QUIRKS.get(raw.lower(), raw)
    if raw in _scripts_by_iso():  # an ISO 639-3 code the registry has: no parsing needed
        iso = _variant(raw, script)
        return f"{iso}_{_pick_script(iso, script, None)}"
    try:
        tag = langcodes.Language.get(raw.replace("_", "-"))
        iso = tag.to_alpha3() if tag.language else None
    except (langcodes.tag_parser.LanguageTagError, LookupError, ValueError):
        iso = None
    if not iso:
        raise UnknownLanguage(f"unknown language label {label!r}")
    # A script the label spells out wins over the text's, the text's over one langcodes implies (deprecated `sh` →
    # sr-Latn: Serbo-Croatian in Cyrillic text is srp_Cyrl).
    # A region implies a script only where it decides one (az-IR is Arabic-script South Azerbaijani).
    script = ((tag.script if _SCRIPT_SUBTAG.search(raw) else None) or script or tag.script
              or (tag.maximize().script if tag.territory else None))
    iso = _variant(_individual_code(iso), script or tag.maximize().script)
    return f"{iso}_{_pick_script(iso, script, tag.maximize().script)}"


def normalize_list(values: str | list[str] | None, option: str = "--languages") -> list[str] | None:
    """A `--languages` value (`fr,de`, or several arguments, each possibly with commas) → registry labels in order,
    once each; None when the option was not given (every language). UsageError naming the option for an unknown
    label, and for a value that names none (`--languages ,` must not mean every language)."""
    from mmbert.errors import UsageError

    if values is None:
        return None
    pieces = [piece.strip() for value in ([values] if isinstance(values, str) else values)
              for piece in value.split(",") if piece.strip()]
    if not pieces:
        raise UsageError(f"{option} names no language")
    labels = []
    for piece in pieces:
        try:
            labels.append(normalize(piece))
        except UnknownLanguage as error:
            detail = "" if repr(piece) in str(error) else f" ({error})"  # `xxx_Zzzz` fails on its code `xxx`
            raise UsageError(f"{option}: unknown language label {piece!r}{detail}") from None
    return list(dict.fromkeys(labels))


def _checked_script(script: str) -> str:
    """An ISO 15924 code in its own spelling (`latn` → `Latn`), or UnknownLanguage naming the bad one."""
    if not re.fullmatch(r"[A-Za-z]{4}", script) or not langcodes.tag_is_valid(f"und-{script}"):
        raise UnknownLanguage(f"script {script!r} is not an ISO 15924 code (four letters, like Latn)")
    return script.title()  # a hint of `latn` or `LATN` must not make `eng_latn`
