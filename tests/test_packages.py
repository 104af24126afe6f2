"""One list of the packages that matter (suite.packages.PACKAGES): the image label, the docs versions table and
a result's provenance.versions all read it, in its order; results written with an older list still read."""

from __future__ import annotations

import re

from suite.containers import build, lock, versions
from suite.containers.settings import containers_root, generations, load_settings
from suite.packages import PACKAGES
from suite.results import provenance
from suite.results.collect import load_results

ROOT = containers_root()
REPO = ROOT.parent


def test_the_list_is_normalised_and_has_no_repeats() -> None:
    assert len(set(PACKAGES)) == len(PACKAGES)
    assert all(lock.normalize(p) == p for p in PACKAGES)


def test_every_listed_package_is_pinned_in_every_generation() -> None:
    # Else a label or table row would drop it silently ("-" in the table, left out of the label).
    for gen in generations(ROOT):
        pins = lock.pinned_versions(load_settings(gen, ROOT))
        assert [p for p in PACKAGES if p not in pins] == [], gen


def test_the_image_label_names_the_list_in_order() -> None:
    for gen in generations(ROOT):
        s = load_settings(gen, ROOT)
        pins = lock.pinned_versions(s)
        label = re.search(r'dev\.grpo-suite\.versions="([^"]*)"', build.render_dockerfile(s))
        assert label is not None, gen
        assert label.group(1) == " ".join(f"{p}=={pins[p]}" for p in PACKAGES), gen


def test_the_versions_table_rows_are_the_list_in_order() -> None:
    rows = [line.split(" | ")[0].removeprefix("| ") for line in versions.versions_table(ROOT).splitlines()[2:]]
    assert rows[: len(PACKAGES)] == list(PACKAGES)
    assert rows[len(PACKAGES)] == "packages in lock"


def test_provenance_records_the_list_in_order() -> None:
    recorded = provenance.package_versions()
    assert set(recorded) <= set(PACKAGES)
    assert list(recorded) == [p for p in PACKAGES if p in recorded]
    assert provenance.package_versions(("no-such-package-here", "pytest")).keys() == {"pytest"}
    # the result says which it looked up, so one left out reads as not installed, not as not recorded
    prov = provenance.collect(argv=["x"], env={}, runtime="host")
    assert prov.packages_checked == list(PACKAGES) and prov.versions == recorded


def test_version_differences_tell_not_installed_from_not_looked_up() -> None:
    new = ({"verl": "0.9.1", "flash-attn": "2.8.3"}, ["verl", "flash-attn", "torch"])
    without = ({"verl": "0.9.1"}, ["verl", "flash-attn", "torch"])
    older = ({"verl": "0.9.1"}, None)  # a result from before packages_checked: flash-attn never looked up
    assert provenance.version_differences([new, new]) is None
    assert provenance.version_differences([new, without]) == "flash-attn: 2.8.3, none"
    assert provenance.version_differences([new, older]) is None
    assert provenance.version_differences([new, without, older]) == "flash-attn: 2.8.3, none"
    assert provenance.version_differences([({"verl": "0.9.2"}, None), older]) == "verl: 0.9.1, 0.9.2"
    assert provenance.version_differences([]) is None


def test_committed_results_with_the_older_list_still_read() -> None:
    found = load_results([REPO / "baselines"], baselines=True, skip_evidence=True)  # the store, as the report reads it
    assert found
    new = {"nvidia-modelopt", "tensordict", "numpy", "pydantic"}
    older = [r for _, r in found if not new & set(r.provenance.versions)]
    newer = [r for _, r in found if new & set(r.provenance.versions)]
    assert older, "the committed results record some versions"
    # Written before the list was shared: those four were never recorded, and the results still read. The results
    # written after it (the 7B recipe, the 7B flex cell, 2026-12-04, its padded twin, 2026-12-05) record the listed packages the host had
    # (it has no nvidia-modelopt).
    assert all(r.provenance.versions for r in older)
    # (and every heavy result promoted since: 2026-12-06 on)
    starts = sorted(r.provenance.start_time for r in newer)
    assert starts[:3] == ["2026-12-04T17:57:32+00:00", "2026-12-04T19:37:32+00:00", "2026-12-05T05:26:14+00:00"]
    assert all(s >= "2026-12-06" for s in starts[3:]) and len(starts) >= 4
    assert all(new & set(r.provenance.versions) == {"tensordict", "numpy", "pydantic"} for r in newer)


def test_the_old_module_level_lists_are_gone() -> None:
    assert not hasattr(build, "LABEL_PACKAGES") and not hasattr(versions, "TABLE_PACKAGES")
    assert provenance.PACKAGES is PACKAGES
