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
                "| contender | layer | default | p50 ms | p99 ms | p99.9 ms | p99 ÷ ideal | failed % | refused % | to faulty % | extra % | goodput |\n",
            );
            out.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
        }
        let vs = ratio(r, ideal_p99(rows, r)).map_or("–".to_owned(), |x| format!("{x:.2}"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {vs} | {:.3} | {:.3} | {:.2} | {:.2} | {:.3} |",
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

/// Draws p99 ÷ the ideal's p99, per scenario (x) and contender (one line each), to an SVG
/// file.
///
/// # Errors
/// If the file cannot be written.
pub fn svg(rows: &[Row], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let mut scenarios: Vec<&str> = Vec::new();
    let mut contenders: Vec<&str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario) {
            scenarios.push(r.scenario);
        }
        if r.layer != "ideal" && !contenders.contains(&r.contender) {
            contenders.push(r.contender);
        }
    }
    let points = |c: &str| -> Vec<(usize, f64)> {
        rows.iter()
            .filter(|r| r.contender == c)
            .filter_map(|r| {
                let x = scenarios.iter().position(|s| *s == r.scenario)?;
                ratio(r, ideal_p99(rows, r)).map(|y| (x, y.max(0.5)))
            })
            .collect()
    };
    let top = contenders
        .iter()
        .flat_map(|c| points(c))
        .map(|(_, y)| y)
        .fold(2.0_f64, f64::max)
        .min(1e4);
    let root = SVGBackend::new(path, (1100, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "arena: p99 latency ÷ the ideal shared queue's (log scale; 1 = ideal)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .right_y_label_area_size(0)
        .build_cartesian_2d(
            (0..scenarios.len().saturating_sub(1)).into_segmented(),
            (0.5..top * 1.2).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => scenarios
                .get(*i)
                .map(|s| s.to_uppercase())
                .unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .y_desc("p99 ÷ ideal")
        .draw()?;
    for (k, c) in contenders.iter().enumerate() {
        let colour = Palette99::pick(k).to_rgba();
        let pts = points(c);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, y)| (SegmentValue::CenterOf(x), y)),
                colour.stroke_width(2),
            ))?
            .label(*c)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        chart.draw_series(
            pts.iter()
                .map(|&(x, y)| Circle::new((SegmentValue::CenterOf(x), y), 3, colour.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    root.present()?;
    Ok(())
}
