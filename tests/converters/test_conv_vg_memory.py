"""The VG converter streams: peak memory does not follow the size of region_descriptions.json."""

from __future__ import annotations

import pytest

from data_prep import bench_vg_memory

GIB_MB = 1024


def test_vg_memory_bench_runs_on_a_small_file(tmp_path):
    bench_vg_memory.generate(tmp_path, size_mb=2)
    report = bench_vg_memory.measure(tmp_path)
    assert report["regions_written"] == bench_vg_memory.REAL_IMAGES * bench_vg_memory.REGIONS_PER_IMAGE
    assert report["images"] > 200 and report["peak_rss_mb"] >= report["rss_after_imports_mb"] > 0


@pytest.mark.slow
def test_vg_peak_memory_on_200mb_region_descriptions(tmp_path):
    files = bench_vg_memory.generate(tmp_path, size_mb=200)
    assert files["regions"].stat().st_size > 199e6
    report = bench_vg_memory.measure(tmp_path)
    print(report)
    assert report["images"] > 25_000
    # json.load of this file alone peaks near 840 MB; on top of the ~700 MB that importing torch maps, loading it
    # whole would pass 1.5 GB. Streaming adds a few tens of MB.
    assert report["peak_rss_mb"] < GIB_MB, report
    assert report["growth_mb"] < 200, report
