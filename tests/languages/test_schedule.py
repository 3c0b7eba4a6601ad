"""mmBERT's default phases and user schedules from YAML."""

import pytest

from languages.schedule import default_schedule, load_schedule
from mmbert.errors import UsageError


def test_default_phase_sizes_are_mmberts():
    phases = {phase.name: phase for phase in default_schedule()}
    assert [p.name for p in default_schedule()] == ["pretrain", "mid_training", "decay"]
    def languages(phase):  # ISO codes: mmBERT counts languages, the registry labels each script apart
        return {label.split("_")[0] for label in phases[phase].languages}

    assert len(languages("pretrain")) == 61 and "code" in phases["pretrain"].languages  # 60 + code
    assert len(languages("mid_training")) == 110  # 109 + code
    assert len(languages("decay")) == 1834 and "code" in phases["decay"].languages  # 1833 + code
    # every script of a language is in: LID labels Serbian Latin srp_Latn, Uzbek Cyrillic uzn_Cyrl
    assert {"srp_Cyrl", "srp_Latn", "uzn_Cyrl", "uzn_Latn"} <= set(phases["mid_training"].languages)
    assert {"hin_Deva", "hin_Latn"} <= set(phases["pretrain"].languages)
    assert (len(phases["pretrain"].languages), len(phases["mid_training"].languages),
            len(phases["decay"].languages)) == (74, 133, 1891)
    assert [p.temperature for p in default_schedule()] == [0.7, 0.5, 0.3]
    assert {"eng_Latn", "cmn_Hani", "arb_Arab", "zsm_Latn"} <= set(phases["pretrain"].languages)
    # each phase adds languages to the previous one
    assert set(phases["pretrain"].languages) < set(phases["mid_training"].languages) < set(phases["decay"].languages)


def test_yaml_schedule_with_every_language_source(tmp_path):
    (tmp_path / "langs.txt").write_text("# low-resource set\nyor\nswh_Latn  # Swahili\n")
    (tmp_path / "s.yaml").write_text("""
phases:
  - {name: a, temperature: 0.7, languages: [en, fr, __label__zh], budget: 1_000_000}
  - {name: b, temperature: 0.5, languages_file: langs.txt, max_epochs: 3, budget: 2.5K}
  - {name: c, temperature: 0.3, top: 5}
  - {name: d, temperature: 0.3, mmbert: pretrain}
""")
    a, b, c, d = load_schedule(tmp_path / "s.yaml")
    assert a.languages == ("cmn_Hani", "eng_Latn", "fra_Latn") and a.budget == 1_000_000
    assert b.languages == ("swh_Latn", "yor_Latn") and b.max_epochs == 3 and b.budget == 2500
    assert len(c.languages) == 5 and "rus_Cyrl" in c.languages
    assert len(d.languages) == 74


@pytest.mark.parametrize("body, message", [
    ("phases: []", "non-empty list"),
    ("phases:\n  - {name: a, languages: [en]}", r"phases\[0\].temperature: required"),
    ("phases:\n  - {name: a, temperature: 0, languages: [en]}", "must be > 0"),
    ("phases:\n  - {name: a, temperature: -1, languages: [en]}", "must be > 0"),
    ("phases:\n  - {name: a, temperature: .inf, languages: [en]}", "temperature: must be > 0"),
    ("phases:\n  - {name: a, temperature: 0.5, languages: [en], budget: .nan}", "budget: must be a whole number"),
    ("phases:\n  - {name: a, temperature: 0.5, languages: [en], budget: .inf}", "budget: must be a whole number"),
    ("phases:\n  - {name: a, temperature: 0.5, languages: [en], max_epochs: .inf}", "max_epochs: must be > 0"),
    ("phases:\n  - {name: a, temperature: 0.5, languages: []}", "has no languages"),
    ("phases:\n  - {name: a, temperature: 0.5, languages: [en, xyz]}", "unknown languages: xyz"),
    ("phases:\n  - {name: a, temperature: 0.5, top: 3, languages: [en]}", "exactly one of"),
    ("phases:\n  - {name: a, temperature: 0.5, langauges: [en]}", "unknown keys"),
    ("phases:\n  - {name: a, temperature: 0.5, top: 3}\n  - {name: a, temperature: 0.5, top: 3}", "unique"),
    ("phases: [", "not valid YAML"),
])
def test_bad_schedules_name_the_problem(tmp_path, body, message):
    (tmp_path / "s.yaml").write_text(body)
    with pytest.raises(UsageError, match=message):
        load_schedule(tmp_path / "s.yaml")


def test_missing_schedule_file(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_schedule(tmp_path / "missing.yaml")
