//! Small SVG charts as text: a line chart, a grouped bar chart and a time-series bar chart.
//!
//! Owns layout, axes ("nice" ticks), legends and the SVG markup of a chart, nothing else:
//! no styling beyond a fixed palette, no scripts, no external references, so a chart can be
//! pasted into a single-file HTML report or a benchmark page and read offline.
//!
//! Output is deterministic on purpose — the QA report must be byte-identical for the same
//! data: numbers are printed with a fixed precision, nothing is random (no generated ids;
//! accessible names come from a `<title>` child instead of `aria-labelledby`), and every
//! text that reaches the markup (titles, series names, labels: queue names come from
//! outside) goes through [`escape`]. Non-finite values, and values a log axis cannot show,
//! are left out rather than drawn at a wrong place.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// Colours of the series, in order; a chart with more series cycles through them.
/// Chosen to stay distinguishable for the common colour-vision deficiencies.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// Escapes text for SVG and HTML, in element content and in quoted attribute values alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pixel size of a chart's `viewBox`; the SVG scales to its container's width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size {
    pub width: f64,
    pub height: f64,
}

impl Default for Size {
    fn default() -> Self {
        Size {
            width: 720.0,
            height: 320.0,
        }
    }
}

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scale {
    #[default]
    Linear,
    /// Base-10 logarithmic; values ≤ 0 cannot be placed and are left out.
    Log10,
}

/// One axis of a line chart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Axis {
    pub title: String,
    pub scale: Scale,
}

impl Axis {
    pub fn linear(title: impl Into<String>) -> Self {
        Axis {
            title: title.into(),
            scale: Scale::Linear,
        }
    }

    pub fn log10(title: impl Into<String>) -> Self {
        Axis {
            title: title.into(),
            scale: Scale::Log10,
        }
    }
}

/// A named series of (x, y) points, drawn in the given order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: several series against shared x and y axes.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub size: Size,
}

/// One group of bars (one bar per series), e.g. one queue.
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    pub label: String,
    /// One value per entry of [`BarChart::series`]; missing values draw no bar.
    pub values: Vec<f64>,
}

/// Grouped bars on a linear y axis starting at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    pub y_title: String,
    pub series: Vec<String>,
    pub groups: Vec<BarGroup>,
    pub size: Size,
}

/// One bucket of a time series: the bucket's start and what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBucket {
    pub start: DateTime<Utc>,
    pub count: u64,
}

/// Counts per time bucket, oldest first, one bar per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeSeriesChart {
    pub title: String,
    pub y_title: String,
    pub buckets: Vec<TimeBucket>,
    pub size: Size,
}

// Room around the plot area for tick labels and axis titles.
const MARGIN_LEFT: f64 = 72.0;
const MARGIN_RIGHT: f64 = 20.0;
const MARGIN_TOP: f64 = 34.0;
const MARGIN_BOTTOM: f64 = 52.0;
const LEGEND_ROW: f64 = 18.0;
/// Average advance of a 12 px sans-serif character; SVG cannot measure text, so legend
/// layout and label truncation estimate with it.
const CHAR_WIDTH: f64 = 7.0;
const TICK_TARGET: usize = 5;

/// The plot area inside the margins.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl Frame {
    fn new(size: Size, legend_rows: usize) -> Frame {
        let top = MARGIN_TOP + LEGEND_ROW * legend_rows as f64;
        Frame {
            left: MARGIN_LEFT,
            top,
            right: (size.width - MARGIN_RIGHT).max(MARGIN_LEFT + 1.0),
            bottom: (size.height - MARGIN_BOTTOM).max(top + 1.0),
        }
    }

    fn width(&self) -> f64 {
        self.right - self.left
    }

    fn height(&self) -> f64 {
        self.bottom - self.top
    }
}

/// Renders a line chart. Points are drawn as a polyline per series with a marker on each
/// point (a series of one point stays visible).
pub fn line_chart(chart: &LineChart) -> String {
    line_chart_placed(chart, FULL_WIDTH)
}

/// Several line charts one under the other in one SVG document (a benchmark's figure):
/// each is drawn exactly as [`line_chart`] draws it, as a nested `<svg>` at its offset.
/// The document is as wide as the widest chart and as tall as all of them.
pub fn stacked_line_charts(charts: &[LineChart]) -> String {
    let width = charts.iter().map(|c| c.size.width).fold(0.0_f64, f64::max);
    let height: f64 = charts.iter().map(|c| c.size.height).sum();
    let mut svg = String::with_capacity(8192 * charts.len().max(1));
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"><rect width="{w}" height="{h}" fill="white"/>"##,
        w = num(width),
        h = num(height),
    );
    let mut top = 0.0;
    for chart in charts {
        let placement = format!(
            r#"x="0" y="{}" width="{}" height="{}""#,
            num(top),
            num(chart.size.width),
            num(chart.size.height)
        );
        svg.push_str(&line_chart_placed(chart, &placement));
        top += chart.size.height;
    }
    svg.push_str("</svg>");
    svg
}

/// How a stand-alone chart sizes itself: to its container's width.
const FULL_WIDTH: &str = r#"width="100%""#;

/// [`line_chart`] with the size attributes of its `<svg>` element given.
fn line_chart_placed(chart: &LineChart, placement: &str) -> String {
    let usable = |v: f64, scale: Scale| v.is_finite() && (scale == Scale::Linear || v > 0.0);
    let series: Vec<(&str, Vec<(f64, f64)>)> = chart
        .series
        .iter()
        .map(|s| {
            let points = s
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| usable(x, chart.x.scale) && usable(y, chart.y.scale))
                .collect();
            (s.name.as_str(), points)
        })
        .collect();
    let names: Vec<&str> = series.iter().map(|(name, _)| *name).collect();
    let (legend, rows) = legend(&names, chart.size.width);
    let frame = Frame::new(chart.size, rows);
    let mut svg = open(&chart.title, chart.size, placement);
    svg.push_str(&legend);

    let xs: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|p| p.1))
        .collect();
    let (Some(x_range), Some(y_range)) = (range(&xs), range(&ys)) else {
        no_data(&mut svg, frame);
        axis_titles(&mut svg, frame, chart.size, &chart.x.title, &chart.y.title);
        svg.push_str("</svg>");
        return svg;
    };
    let x_axis = AxisTicks::new(x_range, chart.x.scale, false);
    let y_axis = AxisTicks::new(y_range, chart.y.scale, false);
    let place_x = |v: f64| frame.left + x_axis.fraction(v) * frame.width();
    let place_y = |v: f64| frame.bottom - y_axis.fraction(v) * frame.height();

    grid_y(&mut svg, frame, &y_axis, place_y);
    for tick in &x_axis.ticks {
        let x = place_x(tick.value);
        let _ = write!(
            svg,
            r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#eee"/><text x="{x}" y="{ty}" text-anchor="middle">{label}</text>"##,
            x = num(x),
            top = num(frame.top),
            bottom = num(frame.bottom),
            ty = num(frame.bottom + 16.0),
            label = escape(&tick.label),
        );
    }
    axes(&mut svg, frame);
    for (index, (name, points)) in series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let _ = write!(svg, r#"<g class="series"><title>{}</title>"#, escape(name));
        if points.len() > 1 {
            let path: Vec<String> = points
                .iter()
                .map(|&(x, y)| format!("{},{}", num(place_x(x)), num(place_y(y))))
                .collect();
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
                path.join(" ")
            );
        }
        for &(x, y) in points {
            let _ = write!(
                svg,
                r#"<circle cx="{}" cy="{}" r="3" fill="{colour}"/>"#,
                num(place_x(x)),
                num(place_y(y))
            );
        }
        svg.push_str("</g>");
    }
    axis_titles(&mut svg, frame, chart.size, &chart.x.title, &chart.y.title);
    svg.push_str("</svg>");
    svg
}

/// Renders grouped bars: one group per [`BarGroup`], one bar per series, each bar labelled
/// with its value so the chart can be read without estimating heights.
pub fn bar_chart(chart: &BarChart) -> String {
    let names: Vec<&str> = chart.series.iter().map(String::as_str).collect();
    let (legend, rows) = if names.len() > 1 {
        legend(&names, chart.size.width)
    } else {
        (String::new(), 0)
    };
    let frame = Frame::new(chart.size, rows);
    let mut svg = open(&chart.title, chart.size, FULL_WIDTH);
    svg.push_str(&legend);
    let values: Vec<f64> = chart
        .groups
        .iter()
        .flat_map(|g| g.values.iter().take(chart.series.len()).copied())
        .filter(|v| v.is_finite())
        .collect();
    let Some((_, max)) = range(&values) else {
        no_data(&mut svg, frame);
        axis_titles(&mut svg, frame, chart.size, "", &chart.y_title);
        svg.push_str("</svg>");
        return svg;
    };
    let y_axis = AxisTicks::new((0.0_f64.min(max), max.max(0.0)), Scale::Linear, true);
    let place_y = |v: f64| frame.bottom - y_axis.fraction(v) * frame.height();
    grid_y(&mut svg, frame, &y_axis, place_y);

    let group_width = frame.width() / chart.groups.len() as f64;
    let bars = chart.series.len().max(1) as f64;
    // A gap of a fifth of the group on each side keeps neighbouring groups apart.
    let bar_width = group_width * 0.6 / bars;
    for (g, group) in chart.groups.iter().enumerate() {
        let group_left = frame.left + group_width * g as f64;
        let _ = write!(
            svg,
            r#"<g class="group"><title>{}</title>"#,
            escape(&group.label)
        );
        for (s, value) in group.values.iter().take(chart.series.len()).enumerate() {
            if !value.is_finite() {
                continue;
            }
            let colour = PALETTE[s % PALETTE.len()];
            let x = group_left + group_width * 0.2 + bar_width * s as f64;
            let zero = place_y(0.0);
            let y = place_y(*value);
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{colour}"><title>{}: {}</title></rect>"#,
                num(x),
                num(y.min(zero)),
                num(bar_width),
                num((zero - y).abs()),
                escape(chart.series.get(s).map_or("", String::as_str)),
                format_value(*value),
            );
            if bar_width >= 14.0 {
                let _ = write!(
                    svg,
                    r#"<text x="{}" y="{}" text-anchor="middle" class="value">{}</text>"#,
                    num(x + bar_width / 2.0),
                    num(y.min(zero) - 3.0),
                    format_value(*value)
                );
            }
        }
        let max_chars = ((group_width - 4.0) / CHAR_WIDTH).floor().max(1.0) as usize;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
            num(group_left + group_width / 2.0),
            num(frame.bottom + 16.0),
            escape(&truncate(&group.label, max_chars))
        );
    }
    axes(&mut svg, frame);
    axis_titles(&mut svg, frame, chart.size, "", &chart.y_title);
    svg.push_str("</svg>");
    svg
}

/// Renders counts per time bucket. Bucket labels are UTC times (`HH:MM`, with the date
/// when the buckets span more than one day), thinned to about eight so they never overlap.
pub fn time_series_chart(chart: &TimeSeriesChart) -> String {
    let frame = Frame::new(chart.size, 0);
    let mut svg = open(&chart.title, chart.size, FULL_WIDTH);
    let (Some(first), Some(last)) = (chart.buckets.first(), chart.buckets.last()) else {
        no_data(&mut svg, frame);
        axis_titles(&mut svg, frame, chart.size, "UTC", &chart.y_title);
        svg.push_str("</svg>");
        return svg;
    };
    let one_day = first.start.date_naive() == last.start.date_naive();
    let format = if one_day { "%H:%M" } else { "%m-%d %H:%M" };
    let max = chart.buckets.iter().map(|b| b.count).max().unwrap_or(0) as f64;
    let y_axis = AxisTicks::new((0.0, max), Scale::Linear, true);
    let place_y = |v: f64| frame.bottom - y_axis.fraction(v) * frame.height();
    grid_y(&mut svg, frame, &y_axis, place_y);

    let slot = frame.width() / chart.buckets.len() as f64;
    let label_every = chart.buckets.len().div_ceil(8).max(1);
    for (i, bucket) in chart.buckets.iter().enumerate() {
        let x = frame.left + slot * i as f64;
        let y = place_y(bucket.count as f64);
        let label = bucket.start.format(format).to_string();
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}: {}</title></rect>"#,
            num(x + slot * 0.1),
            num(y),
            num(slot * 0.8),
            num(frame.bottom - y),
            PALETTE[0],
            escape(&label),
            bucket.count
        );
        if i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                num(x + slot / 2.0),
                num(frame.bottom + 16.0),
                escape(&label)
            );
        }
    }
    axes(&mut svg, frame);
    axis_titles(&mut svg, frame, chart.size, "UTC", &chart.y_title);
    svg.push_str("</svg>");
    svg
}

/// `placement`: the size (and position, when nested) attributes of the `<svg>` element.
fn open(title: &str, size: Size, placement: &str) -> String {
    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" {placement} role="img" font-family="sans-serif" font-size="12" fill="#222"><title>{t}</title><text x="{cx}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{t}</text>"##,
        w = num(size.width),
        h = num(size.height),
        cx = num(size.width / 2.0),
        t = escape(title),
    );
    svg
}

/// Lays the legend out in rows under the title; returns the markup and the row count.
fn legend(names: &[&str], width: f64) -> (String, usize) {
    if names.is_empty() {
        return (String::new(), 0);
    }
    let mut svg = String::from(r#"<g class="legend">"#);
    let (mut x, mut row) = (MARGIN_LEFT, 0usize);
    for (index, name) in names.iter().enumerate() {
        let entry = 20.0 + name.chars().count() as f64 * CHAR_WIDTH + 16.0;
        if x + entry > width - MARGIN_RIGHT && x > MARGIN_LEFT {
            x = MARGIN_LEFT;
            row += 1;
        }
        let y = MARGIN_TOP + LEGEND_ROW * row as f64;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            num(x),
            num(y - 4.0),
            PALETTE[index % PALETTE.len()],
            num(x + 16.0),
            num(y + 6.0),
            escape(name)
        );
        x += entry;
    }
    svg.push_str("</g>");
    // The plot starts below the last row, plus half a row of air.
    (svg, row + 2)
}

fn no_data(svg: &mut String, frame: Frame) {
    axes(svg, frame);
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#777">no data</text>"##,
        num(frame.left + frame.width() / 2.0),
        num(frame.top + frame.height() / 2.0)
    );
}

fn axes(svg: &mut String, frame: Frame) {
    let _ = write!(
        svg,
        r##"<path fill="none" stroke="#444" d="M{l} {t}V{b}H{r}"/>"##,
        l = num(frame.left),
        t = num(frame.top),
        b = num(frame.bottom),
        r = num(frame.right),
    );
}

fn grid_y(svg: &mut String, frame: Frame, axis: &AxisTicks, place: impl Fn(f64) -> f64) {
    for tick in &axis.ticks {
        let y = place(tick.value);
        let _ = write!(
            svg,
            r##"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" stroke="#eee"/><text x="{tx}" y="{ty}" text-anchor="end">{label}</text>"##,
            l = num(frame.left),
            r = num(frame.right),
            y = num(y),
            tx = num(frame.left - 6.0),
            ty = num(y + 4.0),
            label = escape(&tick.label),
        );
    }
}

fn axis_titles(svg: &mut String, frame: Frame, size: Size, x_title: &str, y_title: &str) {
    if !x_title.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" class="axis-title">{}</text>"#,
            num(frame.left + frame.width() / 2.0),
            num(size.height - 10.0),
            escape(x_title)
        );
    }
    if !y_title.is_empty() {
        let cy = frame.top + frame.height() / 2.0;
        let _ = write!(
            svg,
            r#"<text x="16" y="{cy}" transform="rotate(-90 16 {cy})" text-anchor="middle" class="axis-title">{}</text>"#,
            escape(y_title),
            cy = num(cy),
        );
    }
}

/// The smallest and largest of finite values; `None` when there are none.
fn range(values: &[f64]) -> Option<(f64, f64)> {
    values
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

#[derive(Debug, Clone, PartialEq)]
struct Tick {
    value: f64,
    label: String,
}

/// An axis' domain and ticks. The domain is widened to whole ticks so the data never
/// touches a border without a label.
#[derive(Debug, Clone, PartialEq)]
struct AxisTicks {
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<Tick>,
}

impl AxisTicks {
    /// `from_zero`: bars measure from zero, so the domain must include it.
    fn new((min, max): (f64, f64), scale: Scale, from_zero: bool) -> AxisTicks {
        match scale {
            Scale::Linear => {
                let (min, max) = if from_zero {
                    (min.min(0.0), max.max(0.0))
                } else {
                    (min, max)
                };
                let (lo, hi, step) = nice_ticks(min, max, TICK_TARGET);
                // About TICK_TARGET by construction; the cap only guards against float
                // extremes (a range near f64::MAX) turning into a runaway loop.
                let count = (((hi - lo) / step).round() as usize).min(4 * TICK_TARGET);
                let ticks = (0..=count)
                    .map(|i| {
                        let value = lo + step * i as f64;
                        Tick {
                            value,
                            label: format_tick(value, step),
                        }
                    })
                    .collect();
                AxisTicks {
                    scale,
                    lo,
                    hi,
                    ticks,
                }
            }
            Scale::Log10 => {
                let lo_exp = min.log10().floor() as i32;
                let mut hi_exp = max.log10().ceil() as i32;
                if hi_exp == lo_exp {
                    hi_exp += 1;
                }
                let ticks = (lo_exp..=hi_exp)
                    .map(|e| {
                        let value = 10f64.powi(e);
                        Tick {
                            value,
                            label: format_tick(value, value.min(1.0)),
                        }
                    })
                    .collect();
                AxisTicks {
                    scale,
                    lo: f64::from(lo_exp),
                    hi: f64::from(hi_exp),
                    ticks,
                }
            }
        }
    }

    /// Where `value` sits along the axis, 0 at the low end and 1 at the high end.
    fn fraction(&self, value: f64) -> f64 {
        let v = match self.scale {
            Scale::Linear => value,
            Scale::Log10 => value.log10(),
        };
        if self.hi > self.lo {
            (v - self.lo) / (self.hi - self.lo)
        } else {
            0.5
        }
    }
}

/// Heckbert's "nice numbers": a step of 1, 2 or 5 × 10ⁿ giving about `target` ticks, and
/// the range widened to multiples of it. A flat range gets one step of room around it.
pub fn nice_ticks(min: f64, max: f64, target: usize) -> (f64, f64, f64) {
    let (min, max) = if max > min {
        (min, max)
    } else if min == 0.0 {
        (0.0, 1.0)
    } else {
        let pad = min.abs() * 0.5;
        (min - pad, max + pad)
    };
    let span = nice_number(max - min, false);
    let step = nice_number(span / target.max(2).saturating_sub(1) as f64, true);
    let lo = (min / step).floor() * step;
    let hi = (max / step).ceil() * step;
    (lo, hi, step)
}

fn nice_number(x: f64, round: bool) -> f64 {
    let exp = x.log10().floor();
    let magnitude = 10f64.powf(exp);
    let fraction = x / magnitude;
    let nice = if round {
        if fraction < 1.5 {
            1.0
        } else if fraction < 3.0 {
            2.0
        } else if fraction < 7.0 {
            5.0
        } else {
            10.0
        }
    } else if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// A tick label with as many decimals as the step needs; thousands and millions are
/// shortened to `k` and `M` (`12k`, `1.5M`) so labels stay narrow.
pub fn format_tick(value: f64, step: f64) -> String {
    let (value, step, suffix) = if value.abs() >= 1e6 && step >= 1e5 {
        (value / 1e6, step / 1e6, "M")
    } else if value.abs() >= 1e4 && step >= 1e3 {
        (value / 1e3, step / 1e3, "k")
    } else {
        (value, step, "")
    };
    let decimals = if step >= 1.0 || step <= 0.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 9.0) as usize
    };
    let text = format!("{value:.decimals$}");
    format!("{}{suffix}", positive_zero(text))
}

/// A value written on a bar: integers as integers, other values with at most two decimals.
pub fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        positive_zero(format!("{value:.0}"))
    } else {
        let text = format!("{value:.2}");
        positive_zero(text.trim_end_matches('0').trim_end_matches('.').to_owned())
    }
}

/// A coordinate with one decimal and no trailing `.0`, the same on every platform.
fn num(value: f64) -> String {
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text).to_owned();
    positive_zero(text)
}

/// `-0` and `-0.0` print as `0`: a rounding artefact must not change the output.
fn positive_zero(text: String) -> String {
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_owned()
    } else {
        text
    }
}

/// Shortens `text` to at most `max` characters (not bytes), marking a cut with `…`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn size() -> Size {
        Size::default()
    }

    fn line(series: Vec<Series>, y: Axis) -> LineChart {
        LineChart {
            title: "Throughput".into(),
            x: Axis::linear("offered load (req/s)"),
            y,
            series,
            size: size(),
        }
    }

    #[test]
    fn escape_covers_markup_and_both_quote_kinds() {
        assert_eq!(
            escape(r#"<b>"Sales" & 'Support'</b>"#),
            "&lt;b&gt;&quot;Sales&quot; &amp; &#39;Support&#39;&lt;/b&gt;"
        );
        assert_eq!(escape("Kundendienst – Ü"), "Kundendienst – Ü");
    }

    #[test]
    fn nice_ticks_pick_round_steps_covering_the_data() {
        assert_eq!(nice_ticks(0.0, 97.0, 5), (0.0, 100.0, 20.0));
        assert_eq!(nice_ticks(3.0, 8.0, 5), (3.0, 8.0, 1.0));
        assert_eq!(nice_ticks(0.0, 0.7, 5), (0.0, 0.8, 0.2));
        let (lo, hi, step) = nice_ticks(1234.0, 98_765.0, 5);
        assert!(lo <= 1234.0 && hi >= 98_765.0);
        assert_eq!(step, 20_000.0);
    }

    #[test]
    fn nice_ticks_give_a_flat_range_room() {
        let (lo, hi, _) = nice_ticks(5.0, 5.0, 5);
        assert!(lo < 5.0 && hi > 5.0);
        assert_eq!(nice_ticks(0.0, 0.0, 5), (0.0, 1.0, 0.2));
    }

    #[test]
    fn tick_labels_use_the_decimals_the_step_needs_and_short_units() {
        assert_eq!(format_tick(0.4, 0.2), "0.4");
        assert_eq!(format_tick(0.25, 0.05), "0.25");
        assert_eq!(format_tick(40.0, 20.0), "40");
        assert_eq!(format_tick(20_000.0, 5_000.0), "20k");
        assert_eq!(format_tick(1_500_000.0, 500_000.0), "1.5M");
        assert_eq!(format_tick(-0.0, 1.0), "0");
    }

    #[test]
    fn values_print_integers_plainly_and_fractions_with_two_decimals() {
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(2.0 / 3.0), "0.67");
        assert_eq!(format_value(-0.0), "0");
    }

    #[test]
    fn coordinates_have_one_decimal_and_no_negative_zero() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(-0.04), "0");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        assert_eq!(truncate("Überweisungen", 5), "Über…");
        assert_eq!(truncate("Sales", 5), "Sales");
    }

    #[test]
    fn line_chart_draws_every_series_with_its_name_escaped() {
        let svg = line_chart(&line(
            vec![
                Series {
                    name: "p50 <ms>".into(),
                    points: vec![(100.0, 2.0), (200.0, 3.0), (400.0, 9.0)],
                },
                Series {
                    name: "p99".into(),
                    points: vec![(100.0, 5.0)],
                },
            ],
            Axis::linear("latency (ms)"),
        ));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "one point draws no line"
        );
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("p50 &lt;ms&gt;"));
        assert!(!svg.contains("<ms>"));
        assert!(svg.contains("offered load (req/s)"));
        assert!(svg.contains("latency (ms)"));
        assert!(svg.contains(">400<"), "x ticks reach the largest x");
    }

    #[test]
    fn stacked_charts_are_each_drawn_as_alone_one_under_the_other() {
        let first = line(
            vec![Series {
                name: "sustained".into(),
                points: vec![(1_000.0, 990.0), (5_000.0, 4_900.0)],
            }],
            Axis::linear("frames/s"),
        );
        let second = line(
            vec![Series {
                name: "p99".into(),
                points: vec![(1_000.0, 3.0), (5_000.0, 40.0)],
            }],
            Axis::log10("latency (ms)"),
        );
        let svg = stacked_line_charts(&[first.clone(), second.clone()]);
        assert_eq!(svg, stacked_line_charts(&[first.clone(), second.clone()]));
        let height = num(first.size.height + second.size.height);
        assert!(svg.starts_with(&format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {height}\"",
            num(first.size.width)
        )));
        assert!(svg.ends_with("</svg></svg>"));
        assert_eq!(svg.matches("<svg").count(), 3, "one outer, one per chart");
        let second_at = format!(r#"y="{}""#, num(first.size.height));
        assert!(
            svg.contains(&second_at),
            "the second chart sits below the first"
        );
        // Inside its placement, each chart is exactly what `line_chart` draws.
        let alone = line_chart(&second);
        let body = alone.split_once(" role=").map(|(_, body)| body);
        assert!(body.is_some_and(|body| svg.contains(body)), "{svg}");
    }

    #[test]
    fn log_axis_ticks_are_powers_of_ten_and_skip_values_it_cannot_place() {
        let svg = line_chart(&line(
            vec![Series {
                name: "p99".into(),
                points: vec![(1.0, 0.0), (2.0, 0.5), (3.0, 40.0), (4.0, f64::NAN)],
            }],
            Axis::log10("latency (ms)"),
        ));
        assert_eq!(svg.matches("<circle").count(), 2);
        for label in [">0.1<", ">1<", ">10<", ">100<"] {
            assert!(svg.contains(label), "missing tick {label}");
        }
    }

    #[test]
    fn charts_without_data_say_so() {
        let empty_line = line_chart(&line(Vec::new(), Axis::linear("y")));
        let empty_bars = bar_chart(&BarChart {
            title: "Per queue".into(),
            y_title: "conversations".into(),
            series: vec!["offered".into()],
            groups: Vec::new(),
            size: size(),
        });
        let empty_time = time_series_chart(&TimeSeriesChart {
            title: "Over time".into(),
            y_title: "conversations".into(),
            buckets: Vec::new(),
            size: size(),
        });
        for svg in [empty_line, empty_bars, empty_time] {
            assert!(svg.contains(">no data<"), "{svg}");
            assert!(svg.ends_with("</svg>"));
        }
    }

    #[test]
    fn bar_chart_draws_a_labelled_bar_per_value_and_a_legend() {
        let svg = bar_chart(&BarChart {
            title: "Per queue".into(),
            y_title: "conversations".into(),
            series: vec!["offered".into(), "answered".into(), "abandoned".into()],
            groups: vec![
                BarGroup {
                    label: "Sales & <Support>".into(),
                    values: vec![40.0, 35.0, 5.0],
                },
                BarGroup {
                    label: "Billing".into(),
                    values: vec![12.0, 12.0, 0.0],
                },
            ],
            size: size(),
        });
        assert_eq!(
            svg.matches("<rect").count(),
            6 + 3,
            "six bars, three legend keys"
        );
        assert!(svg.contains("Sales &amp; &lt;Support&gt;"));
        assert!(svg.contains("<title>answered: 35</title>"));
        assert!(svg.contains(r#"class="value">40<"#));
        assert!(svg.contains(">abandoned<"), "legend names the series");
    }

    #[test]
    fn time_series_labels_buckets_in_utc_and_thins_them() {
        let start = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).single();
        let Some(start) = start else {
            panic!("valid date")
        };
        let buckets: Vec<TimeBucket> = (0..24)
            .map(|i| TimeBucket {
                start: start + chrono::Duration::minutes(15 * i),
                count: (i % 5) as u64,
            })
            .collect();
        let svg = time_series_chart(&TimeSeriesChart {
            title: "Conversations".into(),
            y_title: "conversations".into(),
            buckets,
            size: size(),
        });
        assert_eq!(svg.matches("<rect").count(), 24);
        assert!(svg.contains("<title>09:15: 1</title>"));
        assert!(svg.contains(">09:00<") && svg.contains(">09:45<"));
        assert!(
            !svg.contains(">09:15<"),
            "every third label is shown, not all"
        );
    }

    /// Every `<` in a chart opens markup the chart wrote itself.
    fn only_own_markup(svg: &str) -> bool {
        const OWN: [&str; 11] = [
            "svg", "title", "text", "g", "rect", "line", "path", "polyline", "circle", "/", "?",
        ];
        svg.split('<').skip(1).all(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
                .collect();
            let name = name.trim_start_matches('/');
            OWN.contains(&name)
        })
    }

    proptest::proptest! {
        #[test]
        fn any_names_and_values_render_without_foreign_markup(
            title in "[a-zÜ–<>&\"' ]{0,20}",
            names in proptest::collection::vec("[a-zÜ–<>&\"' ]{0,12}", 0..4),
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    -1e6f64..1e6,
                    proptest::strategy::Just(f64::NAN),
                    proptest::strategy::Just(f64::INFINITY),
                    proptest::strategy::Just(0.0),
                ],
                0..12,
            ),
            log in proptest::bool::ANY,
        ) {
            let series: Vec<Series> = names
                .iter()
                .map(|name| Series {
                    name: name.clone(),
                    points: values.iter().enumerate().map(|(i, v)| (i as f64, *v)).collect(),
                })
                .collect();
            let y = if log { Axis::log10("y <ms>") } else { Axis::linear("y <ms>") };
            let svg = line_chart(&LineChart { title: title.clone(), x: Axis::linear("x"), y, series, size: size() });
            proptest::prop_assert!(only_own_markup(&svg), "{}", svg);
            proptest::prop_assert!(svg.ends_with("</svg>"));
            let bars = bar_chart(&BarChart {
                title,
                y_title: "n".into(),
                series: names.clone(),
                groups: names
                    .iter()
                    .map(|label| BarGroup { label: label.clone(), values: values.clone() })
                    .collect(),
                size: size(),
            });
            proptest::prop_assert!(only_own_markup(&bars), "{}", bars);
            for chart in [&svg, &bars] {
                for bad in ["=\"NaN", "=\"inf", "=\"-inf", ",NaN", ",inf"] {
                    proptest::prop_assert!(!chart.contains(bad), "{} in {}", bad, chart);
                }
            }
        }
    }

    #[test]
    fn same_chart_gives_byte_identical_svg() {
        let chart = line(
            vec![Series {
                name: "events/s".into(),
                points: vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0)],
            }],
            Axis::linear("y"),
        );
        assert_eq!(line_chart(&chart), line_chart(&chart.clone()));
    }
}
