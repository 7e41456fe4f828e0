//! The SVG chart: throughput (records/s, log scale) by workload, one bar per engine, with the
//! min–max range drawn as a line through each bar.
//!
//! plotters is built with only its SVG backend and no font backend: text is written as SVG
//! `<text>` elements (family "sans-serif") for the viewer to render, and nothing reads system
//! fonts when the chart is made.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::engines::Res;
use crate::report::{Report, Workload, REFERENCE, WORKLOADS};

/// Two-line labels under each group of bars.
fn label(workload: Workload) -> [&'static str; 2] {
    match workload {
        Workload::Append128 => ["append 128 B", "+ final sync"],
        Workload::Durable128 => ["durable append", "128 B each"],
        Workload::Batch128 => ["durable batches", "of 100 × 128 B"],
        Workload::Replay128 => ["replay", "1M × 128 B"],
        Workload::Reopen128 => ["reopen", ""],
        Workload::Append64K => ["append 64 KiB", "+ final sync"],
        Workload::Replay64K => ["replay", "10k × 64 KiB"],
    }
}

fn color(engine: &str, k: usize) -> RGBColor {
    if engine == REFERENCE {
        return RGBColor(0xd6, 0x27, 0x28);
    }
    const OTHERS: [RGBColor; 5] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x7f, 0x7f, 0x7f),
    ];
    OTHERS[k % OTHERS.len()]
}

fn short(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.0}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

pub fn draw(report: &Report, order: &[&str], path: &Path) -> Res<()> {
    let workloads: Vec<Workload> = WORKLOADS.iter().copied().filter(|w| !w.is_time()).collect();
    let engines = report.engines(order);
    let ranges: Vec<(f64, f64)> =
        workloads.iter().flat_map(|w| engines.iter().filter_map(|e| report.range(*w, e))).collect();
    let lowest = ranges.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
    let highest = ranges.iter().map(|r| r.1).fold(0.0, f64::max);
    if ranges.is_empty() || !lowest.is_finite() || lowest <= 0.0 {
        return Err("no figures to chart".into());
    }
    let y_min = 10f64.powf(lowest.log10().floor());
    let y_max = 10f64.powf(highest.log10().ceil());

    let root = SVGBackend::new(path, (1200, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Throughput by engine and workload (records/s, log scale; median of {} runs, line: min–max)",
                report.reps()
            ),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..workloads.len() as f64, (y_min..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_desc("records per second")
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(|e| e.to_string())?;

    let slot = 0.84 / engines.len() as f64;
    for (k, engine) in engines.iter().enumerate() {
        let fill = color(engine, k);
        let bars = workloads.iter().enumerate().filter_map(|(i, w)| {
            let median = report.median(*w, engine)?;
            let x0 = i as f64 + 0.08 + k as f64 * slot;
            Some(Rectangle::new([(x0, y_min), (x0 + slot * 0.9, median)], fill.filled()))
        });
        let name = engine.clone();
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], fill.filled()));
        let whiskers = workloads.iter().enumerate().filter_map(|(i, w)| {
            let (lo, hi) = report.range(*w, engine)?;
            let x = i as f64 + 0.08 + k as f64 * slot + slot * 0.45;
            Some(PathElement::new(vec![(x, lo), (x, hi)], BLACK.stroke_width(2)))
        });
        chart.draw_series(whiskers).map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;

    let style = TextStyle::from(("sans-serif", 14).into_font())
        .pos(Pos::new(HPos::Center, VPos::Top))
        .color(&BLACK);
    for (i, workload) in workloads.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, y_min));
        for (line, text) in label(*workload).iter().enumerate() {
            root.draw(&Text::new(*text, (x, y + 8 + 17 * line as i32), style.clone()))
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
