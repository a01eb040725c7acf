//! `causeway`: the command-line client of `causewayd`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use causeway_api::{DirStats, Request, Response, Stats, Status, DEFAULT_SOCKET};
use clap::{Parser, Subcommand, ValueEnum};

/// Causeway command-line client: asks a running `causewayd` for its state and counters over its
/// control socket.
#[derive(Parser, Debug)]
#[command(name = "causeway", version, about, long_about)]
struct Args {
    /// Control socket of the daemon (the `[control] socket` of its config).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET, env = "CAUSEWAY_SOCKET")]
    socket: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Gateways, SKUs, connections and link state.
    Status,
    /// Counters per gateway, connection and direction: packets, bytes, drops by reason.
    Stats,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causeway: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn request(args: &Args, req: Request) -> Result<Response> {
    let resp =
        causeway_api::call(&args.socket, &req, Duration::from_secs(10)).with_context(|| {
            format!(
                "cannot reach causewayd at {} (is it running? choose the socket with --socket)",
                args.socket.display()
            )
        })?;
    if let Some(e) = resp.error {
        bail!("the daemon refused the request: {e}");
    }
    Ok(resp)
}

fn run(args: &Args) -> Result<()> {
    match args.command {
        Command::Status => {
            let s = request(args, Request::Status)?
                .status
                .context("the daemon sent no status")?;
            match args.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Format::Table => print!("{}", status_table(&s)),
            }
        }
        Command::Stats => {
            let s = request(args, Request::Stats)?
                .stats
                .context("the daemon sent no stats")?;
            match args.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Format::Table => print!("{}", stats_table(&s)),
            }
        }
    }
    Ok(())
}

/// Formats rows as left-aligned columns separated by two spaces.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn rate(bps: u64) -> String {
    if bps >= 1_000_000_000 && bps.is_multiple_of(1_000_000_000) {
        format!("{} Gbit/s", bps / 1_000_000_000)
    } else {
        format!("{} Mbit/s", bps / 1_000_000)
    }
}

fn status_table(s: &Status) -> String {
    let mut out = format!(
        "causewayd {} (pid {}, up {}s, config {})\n\n",
        s.version, s.pid, s.uptime_secs, s.config
    );
    let v = &s.vnet;
    out.push_str(&format!(
        "VNet {}  address space {}  gateway {}{}\n",
        v.name,
        v.address_space.join(", "),
        v.gateway_address,
        v.gateway_address_v6
            .as_ref()
            .map(|a| format!(", {a}"))
            .unwrap_or_default()
    ));
    let link = |i: &causeway_api::InterfaceStatus| {
        format!(
            "{}{} {} mtu {}",
            i.name,
            i.netns
                .as_ref()
                .map(|n| format!("@{n}"))
                .unwrap_or_default(),
            match (i.up, i.running) {
                (true, true) => "up",
                (true, false) => "no-carrier",
                _ => "down",
            },
            i.mtu
        )
    };
    out.push_str(&format!("  interface {}\n\n", link(&v.interface)));
    let mut rows = vec![vec![
        "GATEWAY".to_string(),
        "TYPE".into(),
        "SKU".into(),
        "RATE/DIR".into(),
        "PPS/DIR".into(),
        "CONNECTIONS".into(),
    ]];
    for g in &s.gateways {
        rows.push(vec![
            g.name.clone(),
            g.gateway_type.clone(),
            g.sku.clone(),
            rate(g.bits_per_sec),
            g.packets_per_sec.map_or("-".into(), |p| p.to_string()),
            format!("{}/{}", g.connections.len(), g.max_connections),
        ]);
    }
    out.push_str(&table(&rows));
    let mut rows = vec![vec![
        "CONNECTION".to_string(),
        "GATEWAY".into(),
        "TYPE".into(),
        "STATE".into(),
        "WEIGHT".into(),
        "LINK".into(),
        "PREFIXES".into(),
    ]];
    for g in &s.gateways {
        for c in &g.connections {
            rows.push(vec![
                c.name.clone(),
                g.name.clone(),
                c.connection_type.clone(),
                c.state.clone(),
                c.routing_weight.to_string(),
                match (&c.interface, &c.tunnel) {
                    (Some(i), _) => link(i),
                    (None, Some(t)) => {
                        let mut s = format!(
                            "{} -> {} {} spi {:#x}/{:#x}",
                            t.local, t.peer, t.esp.cipher, t.esp.out_spi, t.esp.in_spi
                        );
                        if let Some(ike) = &t.ike {
                            if let Some(a) = &ike.ike_algorithms {
                                s.push_str(&format!(" ike {a}"));
                            }
                            if let Some(age) = ike.child_age_secs {
                                s.push_str(&format!(" child {age}s"));
                            }
                            if let Some(e) = &ike.last_error {
                                s.push_str(&format!(" (last error: {e})"));
                            }
                        }
                        s
                    }
                    (None, None) => "-".into(),
                },
                c.prefixes.join(", "),
            ]);
        }
    }
    out.push('\n');
    out.push_str(&table(&rows));
    out
}

fn drops_summary(d: &DirStats) -> String {
    let nz: Vec<String> = d
        .drops
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if nz.is_empty() {
        "-".into()
    } else {
        nz.join(" ")
    }
}

fn stats_table(s: &Stats) -> String {
    let mut rows = vec![vec![
        "WHERE".to_string(),
        "DIR".into(),
        "PACKETS".into(),
        "BYTES".into(),
        "SUPER".into(),
        "ICMP".into(),
        "DROPS".into(),
        "BY REASON".into(),
    ]];
    let mut row = |name: String, dir: &str, d: &DirStats| {
        rows.push(vec![
            name,
            dir.into(),
            d.packets.to_string(),
            d.bytes.to_string(),
            d.super_packets.to_string(),
            (d.icmp_errors_sent + d.echo_replies).to_string(),
            d.total_drops().to_string(),
            drops_summary(d),
        ]);
    };
    row(
        format!("vnet {} (before routing)", s.vnet.name),
        "egress",
        &s.vnet.egress,
    );
    for g in &s.gateways {
        row(format!("gateway {}", g.name), "egress", &g.egress);
        row(format!("gateway {}", g.name), "ingress", &g.ingress);
        for c in &g.connections {
            row(format!("  connection {}", c.name), "egress", &c.egress);
            row(format!("  connection {}", c.name), "ingress", &c.ingress);
        }
    }
    let mut out = table(&rows);
    let mut esp = vec![vec![
        "TUNNEL".to_string(),
        "CIPHER".into(),
        "OUT SPI".into(),
        "OUT SEQ".into(),
        "IN SPI".into(),
        "IN SEQ".into(),
    ]];
    for g in &s.gateways {
        for c in &g.connections {
            if let Some(e) = &c.esp {
                esp.push(vec![
                    c.name.clone(),
                    e.cipher.clone(),
                    format!("{:#010x}", e.out_spi),
                    e.out_seq.to_string(),
                    format!("{:#010x}", e.in_spi),
                    e.in_seq.to_string(),
                ]);
            }
        }
    }
    if esp.len() > 1 {
        out.push('\n');
        out.push_str(&table(&esp));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "A    BB\nccc  d\n");
    }

    #[test]
    fn rates() {
        assert_eq!(rate(1_000_000_000), "1 Gbit/s");
        assert_eq!(rate(650_000_000), "650 Mbit/s");
    }
}
