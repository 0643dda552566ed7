//! The arena's outputs: a Markdown table, one compact JSON document, an SVG chart.

use std::{fmt::Write as _, path::Path};

use serde::Serialize;

use crate::run::Row;

/// The ideal row's p99 in `row`'s scenario, if the ideal ran there.
fn ideal_p99<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == row.scenario && r.layer == "ideal")
}

fn ratio(row: &Row, ideal: Option<&Row>) -> Option<f64> {
    ideal
        .filter(|i| i.p99_ms > 0.0)
        .map(|i| row.p99_ms / i.p99_ms)
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The rows as a Markdown table (one per scenario), with p99 ÷ the ideal's where it ran.
#[must_use]
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    let mut scenario = "";
    for r in rows {
        if r.scenario != scenario {
            scenario = r.scenario;
            let title = r
                .scenario
                .parse::<crate::Scenario>()
                .map(|s| s.title())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "\n### {}: {title} ({} members, {:.0} % load, {} s)\n",
                r.scenario.to_uppercase(),
                r.members,
                r.load * 100.0,
                r.seconds
            );
            out.push_str(
                "| contender | layer | default | p50 ms | p99 ms | p99.9 ms | p99 ÷ ideal | failed % | refused % | to faulty % | extra % | goodput | peak share | keys at home | ramp ±pp, p99 × |\n",
            );
            out.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        }
        let vs = ratio(r, ideal_p99(rows, r)).map_or("–".to_owned(), |x| format!("{x:.2}"));
        let home = if r.keys_at_home > 0.0 {
            format!("{:.2}", r.keys_at_home)
        } else {
            "–".to_owned()
        };
        let ramp = if r.ramp_p99_ratio > 0.0 {
            format!("{:.2}, {:.2}", r.ramp_error_pp, r.ramp_p99_ratio)
        } else {
            "–".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {vs} | {:.3} | {:.3} | {:.2} | {:.2} | {:.3} | {:.2} | {home} | {ramp} |",
            r.contender,
            r.layer,
            if r.default { "yes" } else { "" },
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            pct(r.failed, r.sent),
            pct(r.refused, r.sent),
            r.share_to_faulty * 100.0,
            pct(r.extra_attempts, r.sent),
            r.goodput,
            r.peak_window_share,
        );
    }
    out
}

#[derive(Serialize)]
struct Doc<'a> {
    rows: &'a [Row],
}

/// The rows as one compact JSON document: `{"rows": [...]}`.
///
/// # Panics
/// Never: every field serialises.
#[must_use]
pub fn json(rows: &[Row]) -> String {
    serde_json::to_string(&Doc { rows }).expect("rows serialise")
}

/// Draws p99 ÷ the ideal's p99 as a grid, one column per scenario and one row per contender,
/// each cell coloured from green (the ideal) to red (ten times it or worse) on a log scale and
/// labelled with the ratio, to an SVG file. A cell is grey where the contender did not run.
///
/// # Errors
/// If the file cannot be written.
pub fn svg(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let mut scenarios: Vec<&str> = Vec::new();
    let mut contenders: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario) {
            scenarios.push(r.scenario);
        }
        if r.layer != "ideal" && !contenders.iter().any(|(c, _)| *c == r.contender) {
            contenders.push((r.contender, r.layer));
        }
    }
    let (left, top, cell_w, cell_h) = (190_i32, 70_i32, 78_i32, 24_i32);
    let width = left + cell_w * scenarios.len() as i32 + 20;
    let height = top + cell_h * contenders.len() as i32 + 40;
    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = ("sans-serif", 21).into_font();
    let label = ("sans-serif", 15).into_font();
    root.draw(&Text::new(
        "p99 latency ÷ the ideal shared queue's, per scenario (green 1x, red 10x or more)",
        (10, 12),
        title,
    ))?;
    for (x, s) in scenarios.iter().enumerate() {
        root.draw(&Text::new(
            s.to_uppercase(),
            (left + cell_w * x as i32 + cell_w / 2 - 10, top - 22),
            label.clone(),
        ))?;
    }
    for (y, (c, layer)) in contenders.iter().enumerate() {
        let y0 = top + cell_h * y as i32;
        let default = rows.iter().any(|r| r.contender == *c && r.default);
        let name = if default {
            format!("{c} ({layer}, default)")
        } else {
            (*c).to_owned()
        };
        root.draw(&Text::new(name, (8, y0 + 6), label.clone()))?;
        for (x, s) in scenarios.iter().enumerate() {
            let x0 = left + cell_w * x as i32;
            let cell = rows
                .iter()
                .find(|r| r.contender == *c && r.scenario == *s)
                .and_then(|r| ratio(r, ideal_p99(rows, r)));
            let (fill, text) = match cell {
                None => (RGBColor(225, 225, 225), "–".to_owned()),
                Some(v) => (shade(v), short(v)),
            };
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + cell_w - 2, y0 + cell_h - 2)],
                fill.filled(),
            ))?;
            root.draw(&Text::new(text, (x0 + 8, y0 + 5), label.clone()))?;
        }
    }
    root.present()?;
    Ok(())
}

/// Green at 1x, yellow at about 3x, red from 10x, on a log scale.
fn shade(ratio: f64) -> plotters::style::RGBColor {
    let t = (ratio.max(1.0).log10()).clamp(0.0, 1.0);
    let (r, g) = if t < 0.5 {
        (120.0 + 270.0 * t, 210.0)
    } else {
        (255.0, 210.0 - 300.0 * (t - 0.5))
    };
    plotters::style::RGBColor(r.min(255.0) as u8, g.max(60.0) as u8, 110)
}

/// A ratio in at most five characters.
fn short(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 1000.0 {
        format!("{v:.0}")
    } else {
        format!("{:.0}k", v / 1000.0)
    }
}
