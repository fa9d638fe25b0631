"""A kept resolution state is continued only under the resolution settings it was kept with.

A deploy that changes a threshold, comparison or identifier kind must not be followed by
incremental runs that resolve the new records under the new settings while every other entity
stays as the old settings made it: the first run after it resolves in full (and keeps a new
state). Hand-made records, resolved with the declared priors (fast), on both stores.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from fusionlake.lake.schema import conform
from fusionlake.pipeline import resolve


def _tables(n: int) -> dict[str, pl.DataFrame]:
    names = ["WANG WEI", "LI NA", "CHEN JIE", "ZHAO LEI", "LIU YANG", "HU JUN"]
    rows = [{"record_id": f"d1:{i}", "agency": "cn_mps", "feed": "suspects", "drop_id": "d1",
             "source_row": i, "source_key": str(i), "name_original": names[i % 6],
             "name_latin": names[i % 6], "family_name": names[i % 6].split()[0],
             "given_name": names[i % 6].split()[1],
             "name_key_sorted": " ".join(sorted(names[i % 6].split())),
             "name_key_phonetic": " ".join(t[:3] for t in sorted(names[i % 6].split())),
             "birth_date": date(1980 + i % 6, 1 + i % 12, 1), "birth_date_precision": "day",
             "sex": "M", "nationality": "CN"} for i in range(n)]
    return {"person_record": conform(pl.DataFrame(rows), "person_record")}


def test_changed_settings_make_the_next_run_full(store, tmp_path, monkeypatch):
    resolve.resolve_lake(store, _tables(12), "run-1")
    more = {t: f.lazy() for t, f in _tables(13).items()}  # one record more
    mode, detail = resolve.plan(store, more, "all", resolve.Options(), Path(tmp_path))
    assert mode == "incremental"
    assert detail[1].to_list() == ["d1:12"]
    monkeypatch.setattr(resolve, "settings_fingerprint", lambda: "another-fingerprint")
    mode, why = resolve.plan(store, more, "all", resolve.Options(), Path(tmp_path))
    assert (mode, why) == ("full", "the resolution settings changed since the state was kept "
                                   "(transforms/resolution/settings.py): the model is trained "
                                   "again")


def test_the_run_settings_decline_an_incremental_resolution_with_their_reason(store, tmp_path):
    """FUSIONLAKE_INCREMENTAL_MAX_SHARE, FUSIONLAKE_FULL_EVERY and --full each make the plan
    full, saying which (a run on a lake does what a full plan says:
    tests/test_incremental_runs.py::test_settings_decline_an_incremental_run)."""
    resolve.resolve_lake(store, _tables(12), "run-1")
    more = {t: f.lazy() for t, f in _tables(13).items()}  # one record more: 1 of 13 is new
    folder = Path(tmp_path)
    assert resolve.plan(store, more, "all", resolve.Options(max_share=0.1), folder)[0] == \
        "incremental"
    for options, why in ((resolve.Options(max_share=0.05),
                          "1 new records are 7.7% of 13, more than "
                          "FUSIONLAKE_INCREMENTAL_MAX_SHARE=0.05"),
                         (resolve.Options(full_every=1),
                          "1 runs since the model was trained (FUSIONLAKE_FULL_EVERY=1): "
                          "trained again"),
                         (resolve.Options(full=True),
                          "asked for (--full): the model is trained again")):
        assert resolve.plan(store, more, "all", options, folder) == ("full", why)


def test_the_pairs_sampled_to_estimate_u_are_a_setting_that_reaches_training(store,
                                                                             monkeypatch):
    """FUSIONLAKE_U_MAX_PAIRS: read by every Settings made where it is set (the suite sets
    it: tests/conftest.py), carried to the resolver of a full run, and refused when it is no
    number of pairs."""
    import transforms.resolution.resolve as resolver
    from fusionlake.lake.settings import Settings, SettingsError

    monkeypatch.setenv("FUSIONLAKE_U_MAX_PAIRS", "3e5")
    assert Settings().u_max_pairs == Settings.from_env().u_max_pairs == 300_000
    assert resolve.Options.of(Settings(lake=str(store.uri))).u_max_pairs == 300_000
    monkeypatch.delenv("FUSIONLAKE_U_MAX_PAIRS")
    assert Settings().u_max_pairs == 2_000_000  # the production default

    given, real = [], resolver.resolve

    def spy(*args, settings, **kwargs):
        given.append(settings.u_max_pairs)
        return real(*args, settings=settings, **kwargs)

    monkeypatch.setattr(resolver, "resolve", spy)
    resolve.resolve_lake(store, _tables(12), "run-1", options=resolve.Options(u_max_pairs=1234))
    assert given == [1234]
    for bad in ("0", "-5", "many", "inf", "nan"):
        monkeypatch.setenv("FUSIONLAKE_U_MAX_PAIRS", bad)
        with pytest.raises(SettingsError, match=f"FUSIONLAKE_U_MAX_PAIRS .*not '{bad}'"):
            Settings()
