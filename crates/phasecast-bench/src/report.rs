//! `phasecast bench-report`: turns the JSON lines that `phasecast loadgen --out`
//! appends into the tables and charts of `docs/benchmarks.md`: medians over runs of
//! the same configuration, latency against subscribers per system, format and mode,
//! memory against idle connections, and the latency of subscribers while hostile
//! clients attack, against the same configuration without them.

use std::{collections::BTreeMap, path::PathBuf};

use clap::Args;

use crate::{
    attack::Attack,
    chart::{self, Scale},
    loadgen::LoadResult,
    median,
};

/// `phasecast bench-report` options.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// JSON lines written by `phasecast loadgen --out`.
    pub results: PathBuf,
    /// Write charts (latency.svg, cpu.svg, memory.svg) into this folder.
    #[arg(long)]
    pub svg_dir: Option<PathBuf>,
}

/// A configuration: everything but the measurements.
fn key(r: &LoadResult) -> String {
    let system = match r.system {
        crate::loadgen::System::Phasecast => format!(
            "phasecast {} {}",
            r.format,
            if r.delta { "delta" } else { "full" }
        ),
        crate::loadgen::System::OldApi => "old API (json full)".to_owned(),
        crate::loadgen::System::Nats => "nats-server (json full)".to_owned(),
        crate::loadgen::System::Floor => "floor server (json full)".to_owned(),
    };
    let system = if r.nodes > 1 {
        format!("{system}, {} nodes", r.nodes)
    } else {
        system
    };
    let system = if r.server_metrics {
        system
    } else {
        format!("{system}, metrics off")
    };
    let system = if r.serve_args.is_empty() {
        system
    } else {
        format!("{system}, {}", r.serve_args.join(" "))
    };
    let system = if r.shapes.is_empty() {
        system
    } else {
        format!("{system}, shapes {}", r.shapes.join(" | "))
    };
    // The default workload goes unnamed, as in every table before others were run.
    if r.workload == "kuramoto-32" {
        system
    } else {
        format!("{system}, {}", r.workload)
    }
}

/// Medians of one configuration at one subscriber count.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Runs behind the medians.
    pub runs: usize,
    /// Median delivered ratio.
    pub delivered: f64,
    /// Median p50, p99 and max latency, ms.
    pub p50: f64,
    /// p99.
    pub p99: f64,
    /// max.
    pub max: f64,
    /// Median server CPU %.
    pub cpu: f64,
    /// Median server CPU µs per delivered frame.
    pub us_per_frame: f64,
    /// Median server RSS, MB.
    pub rss: f64,
    /// Median loadgen CPU %.
    pub loadgen_cpu: f64,
    /// Median bytes per frame.
    pub bytes_per_frame: f64,
    /// Median KB per idle connection.
    pub kb_per_connection: f64,
    /// phasecast nodes.
    pub nodes: usize,
    /// Median broker CPU %.
    pub broker_cpu: f64,
    /// Median p50 and p99 of subscribers on the producer's node, and on the others.
    pub local: (f64, f64),
    /// See `local`.
    pub remote: (f64, f64),
    /// Median rate the producer achieved, states per second.
    pub achieved_hz: f64,
    /// Median p50 and p99 of the producer's send round trip, ms (NaN when not measured).
    pub send: (f64, f64),
    /// Median slots the producer began a period or more late.
    pub late_slots: f64,
}

/// (configuration → subscribers → cell), loaded and reduced.
pub type Table = BTreeMap<String, BTreeMap<usize, Cell>>;

/// Runs with hostile clients: (configuration, subscribers) → attack → cell and the
/// median number of connections the attackers opened.
pub type Hostile = BTreeMap<(String, usize), BTreeMap<Attack, (Cell, f64)>>;

/// Every result file's content, reduced to medians.
#[derive(Debug, Default)]
pub struct Reports {
    /// Runs under load, without attackers.
    pub load: Table,
    /// Idle-connection runs.
    pub idle: Table,
    /// Runs with `--attack` (the `none` baseline included).
    pub hostile: Hostile,
}

/// The medians of runs of one configuration.
fn reduce(runs: &[LoadResult]) -> Cell {
    let m = |f: &dyn Fn(&LoadResult) -> f64| median(runs.iter().map(f).collect());
    Cell {
        runs: runs.len(),
        delivered: m(&|r| r.delivered_ratio),
        p50: m(&|r| r.latency_ms.p50),
        p99: m(&|r| r.latency_ms.p99),
        max: m(&|r| r.latency_ms.max),
        cpu: m(&|r| r.server_cpu_percent.unwrap_or(f64::NAN)),
        us_per_frame: m(&|r| r.server_cpu_us_per_frame.unwrap_or(f64::NAN)),
        rss: m(&|r| r.server_rss_mb.unwrap_or(f64::NAN)),
        loadgen_cpu: m(&|r| r.loadgen_cpu_percent),
        bytes_per_frame: m(&|r| r.bytes_per_frame),
        kb_per_connection: m(&|r| r.rss_kb_per_connection.unwrap_or(f64::NAN)),
        nodes: runs[0].nodes,
        broker_cpu: m(&|r| r.broker_cpu_percent.unwrap_or(f64::NAN)),
        local: (
            m(&|r| r.latency_local_ms.map_or(f64::NAN, |l| l.p50)),
            m(&|r| r.latency_local_ms.map_or(f64::NAN, |l| l.p99)),
        ),
        remote: (
            m(&|r| r.latency_remote_ms.map_or(f64::NAN, |l| l.p50)),
            m(&|r| r.latency_remote_ms.map_or(f64::NAN, |l| l.p99)),
        ),
        achieved_hz: m(&|r| r.achieved_hz),
        send: (
            m(&|r| r.producer_send_ms.map_or(f64::NAN, |l| l.p50)),
            m(&|r| r.producer_send_ms.map_or(f64::NAN, |l| l.p99)),
        ),
        late_slots: m(&|r| r.late_slots.map_or(f64::NAN, |n| n as f64)),
    }
}

/// Reads and reduces the results.
///
/// # Errors
/// An unreadable file or a line that is not a result.
pub fn load(path: &PathBuf) -> anyhow::Result<Reports> {
    let text = std::fs::read_to_string(path)?;
    type Group = (bool, Option<Attack>, String, usize);
    let mut groups: BTreeMap<Group, Vec<LoadResult>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let r: LoadResult = serde_json::from_str(line)?;
        groups
            .entry((r.idle, r.attack, key(&r), r.subscribers))
            .or_default()
            .push(r);
    }
    let mut reports = Reports::default();
    for ((is_idle, attack, name, n), runs) in groups {
        let cell = reduce(&runs);
        match (attack, is_idle) {
            (Some(attack), _) => {
                let opened = median(
                    runs.iter()
                        .map(|r| r.attack_connections.unwrap_or(0) as f64)
                        .collect(),
                );
                reports
                    .hostile
                    .entry((name, n))
                    .or_default()
                    .insert(attack, (cell, opened));
            }
            (None, true) => {
                reports.idle.entry(name).or_default().insert(n, cell);
            }
            (None, false) => {
                reports.load.entry(name).or_default().insert(n, cell);
            }
        }
    }
    Ok(reports)
}

/// The markdown tables.
pub fn markdown(reports: &Reports) -> String {
    let (load, idle) = (&reports.load, &reports.idle);
    let mut out = String::new();
    if !load.is_empty() {
        out.push_str("| system | subscribers | runs | delivered | p50 ms | p99 ms | max ms | server CPU % | server µs/frame | server RSS MB | loadgen CPU % | B/frame |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (name, cells) in load {
            for (n, c) in cells {
                out.push_str(&format!(
                    "| {name} | {n} | {} | {:.4} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} |\n",
                    c.runs, c.delivered, c.p50, c.p99, c.max, c.cpu, c.us_per_frame, c.rss, c.loadgen_cpu, c.bytes_per_frame
                ));
            }
        }
    }
    let producers: Vec<_> = load
        .iter()
        .flat_map(|(name, cells)| cells.iter().map(move |(n, c)| (name, n, c)))
        .filter(|(_, _, c)| !c.send.1.is_nan())
        .collect();
    if !producers.is_empty() {
        out.push_str("\n| system | subscribers | producer Hz | send p50 ms | send p99 ms | late slots |\n|---|---:|---:|---:|---:|---:|\n");
        for (name, n, c) in producers {
            out.push_str(&format!(
                "| {name} | {n} | {:.1} | {:.2} | {:.2} | {:.0} |\n",
                c.achieved_hz, c.send.0, c.send.1, c.late_slots
            ));
        }
    }
    let multi: Vec<_> = load
        .iter()
        .flat_map(|(name, cells)| cells.iter().map(move |(n, c)| (name, n, c)))
        .filter(|(_, _, c)| c.nodes > 1)
        .collect();
    if !multi.is_empty() {
        out.push_str("\n| system | subscribers | producer's node p50 / p99 ms | other nodes p50 / p99 ms | server CPU % (all nodes) | per node | broker CPU % | server µs/frame | nodes + broker µs/frame |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (name, n, c) in multi {
            // The broker's CPU per delivered frame, added in the same proportion.
            let with_broker = c.us_per_frame * (c.cpu + c.broker_cpu) / c.cpu;
            out.push_str(&format!(
                "| {name} | {n} | {:.2} / {:.2} | {:.2} / {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |\n",
                c.local.0, c.local.1, c.remote.0, c.remote.1, c.cpu, c.cpu / c.nodes as f64, c.broker_cpu, c.us_per_frame, with_broker
            ));
        }
    }
    for ((name, n), attacks) in &reports.hostile {
        let baseline = attacks.get(&Attack::None).map(|(c, _)| c.p99);
        out.push_str(&format!("\n{name}, {n} subscribers, while hostile clients attack:\n\n| attack | runs | hostile connections opened | delivered | p50 ms | p99 ms | p99 vs no attack | max ms | server CPU % | loadgen CPU % |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"));
        for (attack, (c, opened)) in attacks {
            let ratio = baseline.map_or(f64::NAN, |b| c.p99 / b);
            out.push_str(&format!(
                "| {} | {} | {opened:.0} | {:.4} | {:.2} | {:.2} | {ratio:.2}× | {:.1} | {:.1} | {:.1} |\n",
                attack.name(), c.runs, c.delivered, c.p50, c.p99, c.max, c.cpu, c.loadgen_cpu
            ));
        }
    }
    if !idle.is_empty() {
        out.push_str("\n| system | idle connections | runs | server RSS MB | KB per connection |\n|---|---:|---:|---:|---:|\n");
        for (name, cells) in idle {
            for (n, c) in cells {
                out.push_str(&format!(
                    "| {name} | {n} | {} | {:.1} | {:.1} |\n",
                    c.runs, c.rss, c.kb_per_connection
                ));
            }
        }
    }
    out
}

fn line_chart(
    table: &Table,
    title: &str,
    y: &str,
    scale: Scale,
    value: impl Fn(&Cell) -> f64,
    x_label: &str,
) -> String {
    let mut xs: Vec<usize> = table.values().flat_map(|c| c.keys().copied()).collect();
    xs.sort_unstable();
    xs.dedup();
    let series: Vec<(String, Vec<Option<f64>>)> = table
        .iter()
        .map(|(name, cells)| {
            (
                name.clone(),
                xs.iter()
                    .map(|x| cells.get(x).map(&value).filter(|v| v.is_finite()))
                    .collect(),
            )
        })
        .collect();
    let labels: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
    chart::lines(title, y, x_label, scale, &labels, &series)
}

/// Writes latency.svg, cpu.svg and memory.svg.
///
/// # Errors
/// When a file cannot be written.
pub fn write_charts(reports: &Reports, dir: &std::path::Path) -> std::io::Result<()> {
    let (load, idle) = (&reports.load, &reports.idle);
    if !load.is_empty() {
        std::fs::write(
            dir.join("latency.svg"),
            line_chart(
                load,
                "p99 latency vs subscribers (200 Hz)",
                "p99 ms (log)",
                Scale::Log,
                |c| c.p99,
                "subscribers",
            ),
        )?;
        std::fs::write(
            dir.join("cpu.svg"),
            line_chart(
                load,
                "Server CPU per delivered frame",
                "µs per frame",
                Scale::Linear,
                |c| c.us_per_frame,
                "subscribers",
            ),
        )?;
    }
    if !idle.is_empty() {
        std::fs::write(
            dir.join("memory.svg"),
            line_chart(
                idle,
                "Server memory vs idle connections",
                "RSS MB",
                Scale::Linear,
                |c| c.rss,
                "idle connections",
            ),
        )?;
    }
    Ok(())
}
