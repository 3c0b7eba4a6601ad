"""One-off: build the repository's small real data from the reference copies (not run by tests or the demo).

    python scripts/prepare_shipped_data.py --shared ../shared/data

Writes data/udhr/ (a subset of the UDHR in Unicode as plain text + index), data/warc/udhr.warc.gz (the same versions'
HTML pages as WARC response records, as a crawler would store them), copies the Common Crawl excerpt and the awkward
WARC files, and the mmBERT phase languages / FineWeb-2 tables the packages derive theirs from. Sources and licences:
data/README.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

TARGET_VERSIONS = 140


def select_versions(index: Path, phase_languages: Path) -> list[dict]:
    """One version per ISO 639-3 code (best transcription stage), mmBERT's earlier phases first, then many scripts."""
    phases = {row["language"]: row for row in csv.DictReader(phase_languages.open())}
    best: dict[str, dict] = {}
    for element in ET.parse(index).getroot():
        row = element.attrib
        code = row["iso639-3"]
        if code == "und" or int(row["stage"]) < 4:
            continue
        if code not in best or (row["f"] == code and best[code]["f"] != code):  # prefer the plain version
            best[code] = row

    def priority(row: dict) -> tuple:
        phase = phases.get(row["iso639-3"], {})
        return (-int(phase.get("pretrain", 0)), -int(phase.get("mid_training", 0)), -int(phase.get("decay", 0)), row["f"])

    ranked = sorted(best.values(), key=priority)
    return sorted(ranked[:TARGET_VERSIONS], key=lambda r: r["f"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, required=True, help="the reference data folder (../shared/data)")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args()
    shared, out = args.shared, args.output

    versions = select_versions(shared / "udhr/index.xml", shared / "mmbert/phase_languages.csv")
    (out / "udhr/txt").mkdir(parents=True, exist_ok=True)
    with (out / "udhr/index.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "iso639_3", "bcp47", "direction", "name"])
        for row in versions:
            writer.writerow([row["f"], row["iso639-3"], row["bcp47"], row["dir"], row["n"]])
            shutil.copy(shared / f"udhr/txt/udhr_{row['f']}.txt", out / f"udhr/txt/udhr_{row['f']}.txt")

    (out / "warc").mkdir(parents=True, exist_ok=True)
    with (out / "warc/udhr.warc.gz").open("wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for row in versions:
            html = (shared / f"udhr/html/udhr_{row['f']}.html").read_bytes()
            url = f"https://www.unicode.org/udhr/d/udhr_{row['f']}.html"
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=UTF-8"),
                                                  ("Content-Length", str(len(html)))], protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(html), http_headers=headers,
                                               warc_headers_dict={"WARC-Date": "2017-06-01T00:00:00Z"})
            writer.write_record(record)
    for name in ("warcfile.warc.gz", "clipped.warc.gz", "clueweb-quirk.warc.gz", "block-sized-records.warc.gz"):
        shutil.copy(shared / "warc" / name, out / "warc" / name)
    shutil.copy(shared / "warc/LICENSE-resiliparse", out / "warc/LICENSE-resiliparse")
    print(f"{len(versions)} UDHR versions → {out}")


if __name__ == "__main__":
    main()
