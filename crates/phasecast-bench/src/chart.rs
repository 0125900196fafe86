//! Small SVG charts for `docs/`: grouped bars and lines, written by hand so the
//! benchmark tools need no plotting dependency. Deterministic output.

use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 250.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// A y axis: linear from 0, or logarithmic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// From 0 to the largest value.
    Linear,
    /// Decades covering every value.
    Log,
}

struct Axis {
    scale: Scale,
    lo: f64,
    hi: f64,
}

impl Axis {
    fn new(scale: Scale, values: impl Iterator<Item = f64> + Clone) -> Axis {
        let max = values.clone().fold(f64::MIN, f64::max).max(1e-9);
        match scale {
            Scale::Linear => Axis {
                scale,
                lo: 0.0,
                hi: nice_ceiling(max),
            },
            Scale::Log => {
                let min = values
                    .filter(|v| *v > 0.0)
                    .fold(f64::MAX, f64::min)
                    .min(max);
                Axis {
                    scale,
                    lo: 10f64.powf(min.log10().floor()),
                    hi: 10f64.powf(max.log10().ceil()),
                }
            }
        }
    }

    /// Pixel y of a value.
    fn y(&self, v: f64) -> f64 {
        let plot = HEIGHT - TOP - BOTTOM;
        let f = match self.scale {
            Scale::Linear => v / self.hi,
            Scale::Log => {
                (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
            }
        };
        HEIGHT - BOTTOM - f * plot
    }

    fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Linear => (0..=5).map(|i| self.hi * i as f64 / 5.0).collect(),
            Scale::Log => {
                let mut t = vec![];
                let mut v = self.lo;
                while v <= self.hi * 1.0001 {
                    t.push(v);
                    v *= 10.0;
                }
                t
            }
        }
    }
}

fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn label(v: f64) -> String {
    if v >= 1000.0 && v.fract() == 0.0 {
        format!("{}", v as u64)
    } else if v >= 1.0 {
        format!("{:.0}", v)
    } else {
        format!("{}", v)
    }
}

fn frame(out: &mut String, title: &str, y_label: &str, axis: &Axis) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>
<text transform="translate(18,{}) rotate(-90)" text-anchor="middle">{}</text>
"##,
        (WIDTH - RIGHT + LEFT) / 2.0,
        escape(title),
        (HEIGHT - BOTTOM + TOP) / 2.0,
        escape(y_label)
    );
    for t in axis.ticks() {
        let y = axis.y(t);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            label(t)
        );
    }
}

fn legend(out: &mut String, series: &[String]) {
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 10.0 + i as f64 * 20.0;
        let _ = writeln!(
            out,
            r##"<rect x="{}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"##,
            WIDTH - RIGHT + 15.0,
            y - 10.0,
            COLOURS[i % COLOURS.len()],
            WIDTH - RIGHT + 32.0,
            y,
            escape(s)
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Grouped bars: one group per entry of `groups`, one bar per series.
pub fn bars(
    title: &str,
    y_label: &str,
    scale: Scale,
    series: &[String],
    groups: &[(String, Vec<f64>)],
) -> String {
    let axis = Axis::new(scale, groups.iter().flat_map(|(_, v)| v.iter().copied()));
    let mut out = String::new();
    frame(&mut out, title, y_label, &axis);
    let plot_w = WIDTH - LEFT - RIGHT;
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = (group_w * 0.8) / series.len().max(1) as f64;
    for (g, (name, values)) in groups.iter().enumerate() {
        let x0 = LEFT + g as f64 * group_w + group_w * 0.1;
        for (i, v) in values.iter().enumerate() {
            let y = axis.y(*v);
            let _ = writeln!(
                out,
                r##"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"##,
                x0 + i as f64 * bar_w,
                bar_w - 1.0,
                (HEIGHT - BOTTOM - y).max(0.0),
                COLOURS[i % COLOURS.len()],
                escape(&series[i]),
                label(*v)
            );
        }
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
            x0 + group_w * 0.4,
            HEIGHT - BOTTOM + 18.0,
            escape(name)
        );
    }
    legend(&mut out, series);
    out.push_str("</svg>\n");
    out
}

/// Lines over a shared x axis (shown as categories, e.g. subscriber counts).
pub fn lines(
    title: &str,
    y_label: &str,
    x_label: &str,
    scale: Scale,
    xs: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let axis = Axis::new(
        scale,
        series.iter().flat_map(|(_, v)| v.iter().flatten().copied()),
    );
    let mut out = String::new();
    frame(&mut out, title, y_label, &axis);
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / xs.len().max(1) as f64;
    for (i, name) in xs.iter().enumerate() {
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
            x(i),
            HEIGHT - BOTTOM + 18.0,
            escape(name)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        escape(x_label)
    );
    for (s, (_, values)) in series.iter().enumerate() {
        let colour = COLOURS[s % COLOURS.len()];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), axis.y(v))))
            .collect();
        let _ = writeln!(
            out,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"##,
            points.join(" ")
        );
        for p in &points {
            let (px, py) = p.split_once(',').expect("x,y");
            let _ = writeln!(
                out,
                r##"<circle cx="{px}" cy="{py}" r="3" fill="{colour}"/>"##
            );
        }
    }
    legend(
        &mut out,
        &series.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_and_scaled() {
        let svg = bars(
            "t",
            "bytes",
            Scale::Log,
            &["a".into(), "b".into()],
            &[("g".into(), vec![10.0, 1000.0])],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect x=").count(),
            2 + 2,
            "two bars and two legend swatches"
        );
        let axis = Axis::new(Scale::Log, [10.0, 1000.0].into_iter());
        assert_eq!((axis.lo, axis.hi), (10.0, 1000.0));
        assert!(axis.y(1000.0) < axis.y(10.0));
        let svg = lines(
            "t",
            "ms",
            "subscribers",
            Scale::Linear,
            &["10".into(), "100".into()],
            &[("p99".into(), vec![Some(1.0), None])],
        );
        assert_eq!(svg.matches("<circle").count(), 1);
        assert_eq!(nice_ceiling(7.3), 10.0);
        assert_eq!(nice_ceiling(230.0), 250.0);
    }
}
