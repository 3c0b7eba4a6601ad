"""One-off: derive languages/data/ from the reference copies (not run by tests or the demo).

    python scripts/prepare_language_table.py --shared ../shared/data

- languages/data/languages.csv: one row per language-script label. FineWeb-2's train subsets (Apache-2.0; words,
  documents and UTF-8 bytes per label), plus the languages mmBERT trains on that FineWeb-2 lacks (English, source
  code and a few dozen others, with zero counts and their likely script from CLDR via langcodes).
- languages/data/mmbert_phase_languages.csv: mmBERT's per-phase language sets (JHU-CLSP/mmBERT, MIT), unchanged.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import langcodes
from iso639 import Lang

COLUMNS = ["code", "iso639_3", "script", "name", "family", "words", "documents", "bytes", "source"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, required=True)
    args = parser.parse_args()
    out = Path(__file__).resolve().parent.parent / "languages" / "data"
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for row in csv.DictReader((args.shared / "fineweb2/fineweb2-language-distribution.csv").open()):
        if row["split"] != "train" or row["subset"].endswith("_removed") or row["code"] == "und":
            continue
        rows.append({"code": row["subset"], "iso639_3": row["code"], "script": row["script"], "name": row["name"],
                     "family": row["family"], "words": row["words"], "documents": row["documents"],
                     "bytes": row["utf8_bytes"], "source": "fineweb2"})
    known = {row["iso639_3"] for row in rows}
    phases = args.shared / "mmbert/phase_languages.csv"
    for row in csv.DictReader(phases.open()):
        iso = row["language"]
        if iso in known or iso == "code":
            continue
        script = langcodes.Language.get(iso).maximize().script or "Latn"
        rows.append({"code": f"{iso}_{script}", "iso639_3": iso, "script": script, "name": Lang(iso).name,
                     "family": "", "words": 0, "documents": 0, "bytes": 0, "source": "mmbert"})
    rows.sort(key=lambda r: r["code"])
    with (out / "languages.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(phases, out / "mmbert_phase_languages.csv")
    print(f"{len(rows)} labels → {out / 'languages.csv'}")


if __name__ == "__main__":
    main()
