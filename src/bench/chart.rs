//! Minimal SVG line charts for bench reports (`convoy bench e2e --chart FILE.svg`): panels
//! stacked in one document, each with axes, ticks, a legend, series as polylines with
//! point markers, and horizontal reference lines (a target). Pure and deterministic: the
//! same chart gives the same bytes (numbers printed with fixed precision), so a committed
//! chart only changes when the figures do.

use std::fmt::Write;

/// Colours of successive series (colour-blind safe).
const PALETTE: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9",
];
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_RIGHT: f64 = 170.0;
const MARGIN_TOP: f64 = 34.0;
const MARGIN_BOTTOM: f64 = 46.0;

/// One line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// (x, y), drawn in x order.
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A horizontal reference line, e.g. a latency target.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub label: String,
    pub y: f64,
}

/// One panel: a titled plot with its axes.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// Logarithmic y axis (values ≤ 0 are drawn at the bottom).
    pub log_y: bool,
    pub series: Vec<Series>,
    pub references: Vec<Reference>,
}

/// An SVG document of `panels` stacked vertically, each `width` × `panel_height` pixels.
pub fn document(panels: &[LineChart], width: f64, panel_height: f64) -> String {
    let height = panel_height * panels.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n",
        w = fmt(width),
        h = fmt(height),
    );
    for (index, panel) in panels.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<g transform=\"translate(0 {})\">",
            fmt(panel_height * index as f64)
        );
        panel.render_into(&mut svg, width, panel_height);
        svg.push_str("</g>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

/// A value range with "nice" tick marks.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    low: f64,
    high: f64,
    ticks: Vec<f64>,
    log: bool,
}

impl Axis {
    fn linear(values: impl Iterator<Item = f64>) -> Axis {
        let high = values.filter(|v| v.is_finite()).fold(0.0_f64, f64::max);
        let high = if high <= 0.0 { 1.0 } else { high };
        let step = nice_step(high / 5.0);
        let top = (high / step).ceil() * step;
        let ticks = (0..=((top / step).round() as usize))
            .map(|n| n as f64 * step)
            .collect();
        Axis {
            low: 0.0,
            high: top,
            ticks,
            log: false,
        }
    }

    fn logarithmic(values: impl Iterator<Item = f64>) -> Axis {
        let positive: Vec<f64> = values.filter(|v| v.is_finite() && *v > 0.0).collect();
        let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
        let max = positive.iter().copied().fold(0.0_f64, f64::max);
        let (low, high) = if positive.is_empty() {
            (0, 1)
        } else {
            (
                min.log10().floor() as i32,
                (max.log10().ceil() as i32).max(min.log10().floor() as i32 + 1),
            )
        };
        Axis {
            low: 10f64.powi(low),
            high: 10f64.powi(high),
            ticks: (low..=high).map(|p| 10f64.powi(p)).collect(),
            log: true,
        }
    }

    /// Where `value` falls, 0 (low) to 1 (high), clamped.
    fn position(&self, value: f64) -> f64 {
        let share = if self.log {
            if value <= 0.0 {
                return 0.0;
            }
            (value.log10() - self.low.log10()) / (self.high.log10() - self.low.log10())
        } else {
            (value - self.low) / (self.high - self.low)
        };
        share.clamp(0.0, 1.0)
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

/// A number for an attribute: one decimal, no trailing `.0`.
fn fmt(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        format!("{rounded:.1}")
    }
}

/// A tick label: `20k` for thousands, `0.5` below one.
fn tick_label(value: f64) -> String {
    if value >= 1000.0 && (value / 1000.0).fract() == 0.0 {
        format!("{}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl LineChart {
    fn render_into(&self, svg: &mut String, width: f64, height: f64) {
        let (left, top) = (MARGIN_LEFT, MARGIN_TOP);
        let plot_w = (width - MARGIN_LEFT - MARGIN_RIGHT).max(10.0);
        let plot_h = (height - MARGIN_TOP - MARGIN_BOTTOM).max(10.0);
        let xs = Axis::linear(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let y_values = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .chain(self.references.iter().map(|r| r.y))
        };
        let ys = if self.log_y {
            Axis::logarithmic(y_values())
        } else {
            Axis::linear(y_values())
        };
        let x_at = |x: f64| left + xs.position(x) * plot_w;
        let y_at = |y: f64| top + (1.0 - ys.position(y)) * plot_h;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>",
            fmt(left),
            escape(&self.title)
        );
        for &tick in &xs.ticks {
            let x = fmt(x_at(tick));
            let _ = writeln!(
                svg,
                "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#e5e5e5\"/>\
                 <text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                fmt(top),
                fmt(top + plot_h),
                fmt(top + plot_h + 16.0),
                tick_label(tick)
            );
        }
        for &tick in &ys.ticks {
            let y = fmt(y_at(tick));
            let _ = writeln!(
                svg,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#e5e5e5\"/>\
                 <text x=\"{}\" y=\"{y}\" dy=\"4\" text-anchor=\"end\">{}</text>",
                fmt(left),
                fmt(left + plot_w),
                fmt(left - 6.0),
                tick_label(tick)
            );
        }
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>",
            fmt(left),
            fmt(top),
            fmt(plot_w),
            fmt(plot_h)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            fmt(left + plot_w / 2.0),
            fmt(top + plot_h + 36.0),
            escape(&self.x_label)
        );
        let _ = writeln!(
            svg,
            "<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            fmt(top + plot_h / 2.0),
            escape(&self.y_label)
        );
        for reference in &self.references {
            let y = fmt(y_at(reference.y));
            let _ = writeln!(
                svg,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#c00\" \
                 stroke-dasharray=\"2 3\"/><text x=\"{}\" y=\"{y}\" dy=\"-4\" fill=\"#c00\" \
                 text-anchor=\"end\">{}</text>",
                fmt(left),
                fmt(left + plot_w),
                fmt(left + plot_w - 4.0),
                escape(&reference.label)
            );
        }
        for (index, series) in self.series.iter().enumerate() {
            let colour = PALETTE[index % PALETTE.len()];
            let mut points = series.points.clone();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{},{}", fmt(x_at(x)), fmt(y_at(y))))
                .collect();
            let dash = if series.dashed {
                " stroke-dasharray=\"6 4\""
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/>",
                path.join(" ")
            );
            for &(x, y) in &points {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"3\" fill=\"{colour}\"/>",
                    fmt(x_at(x)),
                    fmt(y_at(y))
                );
            }
            let legend_y = top + 8.0 + 18.0 * index as f64;
            let legend_x = left + plot_w + 12.0;
            let _ = writeln!(
                svg,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" \
                 stroke-width=\"2\"{dash}/><text x=\"{}\" y=\"{}\" dy=\"4\">{}</text>",
                fmt(legend_x),
                fmt(legend_y),
                fmt(legend_x + 20.0),
                fmt(legend_y),
                fmt(legend_x + 26.0),
                fmt(legend_y),
                escape(&series.name)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn chart(log_y: bool) -> LineChart {
        LineChart {
            title: "Latency <p99>".to_owned(),
            x_label: "offered frames/s".to_owned(),
            y_label: "ms".to_owned(),
            log_y,
            series: vec![
                Series {
                    name: "fsync on".to_owned(),
                    points: vec![(5_000.0, 12.0), (1_000.0, 4.0), (20_000.0, 180.0)],
                    dashed: false,
                },
                Series {
                    name: "fsync off".to_owned(),
                    points: vec![(1_000.0, 1.5), (5_000.0, 2.0)],
                    dashed: true,
                },
            ],
            references: vec![Reference {
                label: "target 50 ms".to_owned(),
                y: 50.0,
            }],
        }
    }

    #[test]
    fn a_document_is_deterministic_svg_with_one_polyline_and_marker_per_point() {
        let svg = document(&[chart(false), chart(true)], 800.0, 300.0);
        assert_eq!(svg, document(&[chart(false), chart(true)], 800.0, 300.0));
        assert!(svg
            .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"600\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("<circle").count(), 10);
        assert_eq!(svg.matches("<g transform=").count(), 2);
        assert!(svg.contains("Latency &lt;p99&gt;"), "text is escaped");
        assert!(svg.contains("target 50 ms") && svg.contains("stroke-dasharray=\"6 4\""));
    }

    #[test]
    fn points_are_drawn_in_x_order_inside_the_plot() {
        let svg = document(&[chart(false)], 800.0, 300.0);
        let line = svg.lines().find(|l| l.starts_with("<polyline")).unwrap();
        let points = line.split('"').nth(1).unwrap();
        let xs: Vec<f64> = points
            .split(' ')
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        let ys: Vec<f64> = points
            .split(' ')
            .map(|p| p.split(',').nth(1).unwrap().parse().unwrap())
            .collect();
        let (top, bottom) = (MARGIN_TOP, 300.0 - MARGIN_BOTTOM);
        assert!(ys.iter().all(|y| (top..=bottom).contains(y)), "{ys:?}");
        assert!(ys[2] < ys[0], "a higher value is drawn higher");
    }

    #[test]
    fn axes_get_round_ticks_covering_the_data() {
        let axis = Axis::linear([0.0, 23_000.0].into_iter());
        assert_eq!(axis.high, 25_000.0);
        assert_eq!(
            axis.ticks,
            vec![0.0, 5_000.0, 10_000.0, 15_000.0, 20_000.0, 25_000.0]
        );
        let log = Axis::logarithmic([1.5, 180.0, 0.0].into_iter());
        assert_eq!(log.ticks, vec![1.0, 10.0, 100.0, 1_000.0]);
        assert!((log.position(10.0) - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            log.position(0.0),
            0.0,
            "non-positive values sit at the bottom"
        );
        assert_eq!(Axis::linear(std::iter::empty()).high, 1.0);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(20_000.0), "20k");
        assert_eq!(tick_label(250.0), "250");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(nice_step(2_300.0), 5_000.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
