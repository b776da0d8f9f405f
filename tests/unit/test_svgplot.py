"""The scale bench's hand-written SVG charts (tools/bench/svgplot.py): well-formed, every point drawn
and labelled, axes from 0 past the largest value, titles escaped."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tools.bench.scale import plot
from tools.bench.svgplot import _ticks, line_chart

NS = "{http://www.w3.org/2000/svg}"


def test_a_chart_draws_and_labels_every_point_on_axes_from_zero() -> None:
    svg = ET.fromstring(line_chart("boots/s <&>", [100, 200, 1000], [13.5, 7.6, 3.1], "hosts", "boots/s"))
    assert len(svg.findall(f"{NS}circle")) == 3
    texts = [t.text for t in svg.findall(f"{NS}text")]
    assert texts[0] == "boots/s <&>" and {"13.5", "7.6", "3.1"} <= set(texts)
    [line] = svg.findall(f"{NS}polyline")
    assert len(line.get("points", "").split()) == 3


@pytest.mark.parametrize(("high", "ticks"), [(13.5, [0, 5, 10, 15]), (0.25, [0, 0.05, 0.1, 0.15, 0.2, 0.25]),
                                             (1000, [0, 200, 400, 600, 800, 1000]), (0.0, [0, 1])])
def test_ticks_are_round_and_reach_past_the_largest_value(high: float, ticks: list[float]) -> None:
    assert _ticks(high) == ticks


def test_a_chart_needs_a_y_for_every_x() -> None:
    with pytest.raises(ValueError):
        line_chart("t", [1, 2], [1], "x", "y")


def test_the_bench_writes_one_svg_per_measured_metric(tmp_path: Path) -> None:
    rows = [{"hosts": h, "up_s": 12.0 * h / 100, "mem_mb_per_host": 1.0, "router_cpu_pct": 2.8 * h / 100,
             "boots_per_s": 13.5, "list_p50_s": 0.015, "sched_p50_s": float("nan"), "sched_p99_s": float("nan")}
            for h in (100, 200)]
    written = plot(rows, tmp_path / "plots")
    assert sorted(p.name for p in written) == ["boots_per_s.svg", "list_p50_s.svg", "mem_mb_per_host.svg",
                                               "router_cpu_pct.svg", "up_s.svg"]  # NaN: not measured, not drawn
    assert all(ET.fromstring(p.read_text()).tag == f"{NS}svg" for p in written)
