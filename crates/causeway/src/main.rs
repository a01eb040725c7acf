//! `causeway`: the command-line client of `causewayd`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use causeway_api::{
    DirStats, FlowCounts, GatewayFlows, Request, Response, Stats, Status,
    CAPTURE_DEFAULT_TIMEOUT_SECS, DEFAULT_SOCKET,
};
use clap::{Parser, Subcommand, ValueEnum};

/// The DESCRIPTION section of `causeway --help` (`-h` prints only the first line).
const LONG_ABOUT: &str = "\
The Causeway command-line client.

DESCRIPTION:
  causeway talks to a running causewayd over the daemon's control socket, one request per
  command, and prints the answer as aligned tables (-o table, the default) or as the daemon's
  JSON object (-o json). `status` and `stats` only read the daemon's state and counters; other
  commands (see `causeway help`) may change it. It waits at most 10 seconds for an answer
  (`capture`: its timeout and 10 seconds more).
  `completions` prints a shell completion script and needs no daemon.";

/// The FILES, ENVIRONMENT, SIGNALS, EXIT STATUS and EXAMPLES sections of `causeway --help`.
const AFTER_LONG_HELP: &str = "\
FILES:
  /run/causeway/control.sock
      The daemon's control socket when neither --socket nor CAUSEWAY_SOCKET is given; it must be
      the `[control] socket` of the daemon's configuration. The daemon creates it with mode 0600,
      so querying it needs the daemon's user (root).

ENVIRONMENT:
  CAUSEWAY_SOCKET   The control socket, when --socket is not given.

SIGNALS:
  causeway handles no signal: SIGINT or SIGTERM ends it at once (a request it has already sent
  may still be carried out by the daemon).

EXIT STATUS:
  0  Success.
  1  The daemon cannot be reached, refuses the request, or sends no answer (`causeway: ...` on
     stderr).
  2  A command-line usage error.

EXAMPLES:
  Show the gateways, their SKUs and connections:
      causeway status
  Counters as JSON, from a daemon with another control socket:
      causeway --socket /run/causeway-lab/control.sock -o json stats
  Install bash completion (for the current user):
      mkdir -p ~/.local/share/bash-completion/completions
      causeway completions bash > ~/.local/share/bash-completion/completions/causeway";

/// The long help of `causeway completions`.
const COMPLETIONS_LONG_ABOUT: &str = "\
Print a shell completion script (bash, zsh or fish) on stdout.

Install it where the shell looks for completions, for example:
  bash: causeway completions bash > /usr/share/bash-completion/completions/causeway
  zsh:  causeway completions zsh > /usr/local/share/zsh/site-functions/_causeway
  fish: causeway completions fish > ~/.config/fish/completions/causeway.fish
Then start a new shell. Regenerate the script after upgrading causeway.";

#[derive(Parser, Debug)]
#[command(
    name = "causeway",
    version,
    about = "The Causeway command-line client.",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
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
    /// Active flows per gateway, the most bytes first: 5-tuple, state, packets and bytes each
    /// way, age, idle time and the connection they use.
    Flows {
        /// Only this gateway (default: every gateway).
        #[arg(long, value_name = "NAME")]
        gateway: Option<String>,
        /// Flows listed per gateway (default 20, at most 10000).
        #[arg(long, value_name = "N")]
        top: Option<u32>,
    },
    /// Change a gateway in place.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Capture packets of a connection, as the pipeline forwards them (inner packets for a
    /// tunnel), into a pcap file (raw IP) that the daemon writes; returns when COUNT packets are
    /// written or the timeout passes.
    Capture {
        /// The connection's name in the config.
        #[arg(long, value_name = "NAME")]
        connection: String,
        /// Only this direction (default: both).
        #[arg(long, value_enum)]
        direction: Option<CaptureDirection>,
        /// Packets to capture (1..1000000).
        #[arg(long, value_name = "N")]
        count: u32,
        /// The pcap file (relative paths are taken from the current directory).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// Seconds to wait for COUNT packets (default 30, at most 600).
        #[arg(long, value_name = "SECS")]
        timeout: Option<u32>,
    },
    /// Re-read the daemon's config file and apply the changes (as SIGHUP does)
    ///
    /// Added connections come up, removed ones go down (IKE tunnels send a Delete), unchanged
    /// ones are not touched; a changed SKU is a live resize. An invalid file, or a change to
    /// [vnet], [control], [metrics] or the gateways' names and types, is refused whole and the
    /// running config stays.
    Reload,
    /// Print a shell completion script (bash, zsh or fish) on stdout.
    #[command(long_about = COMPLETIONS_LONG_ABOUT)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(Subcommand, Debug)]
enum GatewayCommand {
    /// Resize a gateway to another SKU under traffic. Standard <-> HighPerformance, within the
    /// ErGw*AZ family, ErGwScale units, and within the VpnGw family (VpnGw1..5, or VpnGw1AZ..5AZ)
    /// are done in place; to or from UltraPerformance and across families the daemon refuses and
    /// says why (the gateway must be recreated).
    Resize {
        /// The gateway's name in the config.
        name: String,
        /// The new SKU, e.g. HighPerformance, VpnGw2, ErGwScale.
        sku: String,
        /// Scale units for ErGwScale (1..40).
        #[arg(long)]
        scale_units: Option<u32>,
    },
}

/// `causeway capture --direction`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CaptureDirection {
    Ingress,
    Egress,
}

/// The shells `causeway completions` writes a script for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script of `causeway` for `shell`.
fn completion_script(shell: CompletionShell) -> Vec<u8> {
    use clap::CommandFactory;
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Args::command(), "causeway", &mut out);
    out
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
    // A capture is answered when it ends: wait for its timeout, and a margin.
    let wait = match &req {
        Request::Capture { timeout_secs, .. } => {
            u64::from(timeout_secs.unwrap_or(CAPTURE_DEFAULT_TIMEOUT_SECS)) + 10
        }
        // A reload may create interfaces and waits for the workers (at most a few seconds).
        Request::Reload => 30,
        _ => 10,
    };
    let resp =
        causeway_api::call(&args.socket, &req, Duration::from_secs(wait)).with_context(|| {
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
    match &args.command {
        Command::Gateway(GatewayCommand::Resize {
            name,
            sku,
            scale_units,
        }) => {
            let s = request(
                args,
                Request::Resize {
                    gateway: name.clone(),
                    sku: sku.clone(),
                    scale_units: *scale_units,
                },
            )?
            .status
            .context("the daemon sent no status")?;
            match args.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Format::Table => print!("{}", status_table(&s)),
            }
        }
        Command::Capture {
            connection,
            direction,
            count,
            file,
            timeout,
        } => {
            // The daemon writes the file: give it an absolute path.
            let file = std::path::absolute(file)
                .with_context(|| format!("making {} absolute", file.display()))?;
            let file = file
                .to_str()
                .context("the capture file's path is not UTF-8")?
                .to_string();
            let r = request(
                args,
                Request::Capture {
                    connection: connection.clone(),
                    direction: direction.map(|d| {
                        match d {
                            CaptureDirection::Ingress => "ingress",
                            CaptureDirection::Egress => "egress",
                        }
                        .to_string()
                    }),
                    count: *count,
                    file: file.clone(),
                    timeout_secs: *timeout,
                },
            )?;
            let n = r.captured.context("the daemon sent no packet count")?;
            match args.output {
                Format::Json => println!("{}", serde_json::json!({ "captured": n, "file": file })),
                Format::Table => println!("captured {n} packets to {file}"),
            }
        }
        Command::Reload => {
            let r = request(args, Request::Reload)?
                .reload
                .context("the daemon sent no reload result")?;
            match args.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
                Format::Table => print!("{}", reload_table(&r)),
            }
        }
        Command::Completions { shell } => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&completion_script(*shell))
                .context("writing the completion script")?;
        }
        Command::Status => {
            let s = request(args, Request::Status)?
                .status
                .context("the daemon sent no status")?;
            match args.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&s)?),
                Format::Table => print!("{}", status_table(&s)),
            }
        }
        Command::Flows { gateway, top } => {
            let f = request(
                args,
                Request::Flows {
                    gateway: gateway.clone(),
                    top: *top,
                },
            )?
            .flows
            .context("the daemon sent no flows")?;
            match args.output {
                Format::Json => println!("{}", serde_json::to_string_pretty(&f)?),
                Format::Table => print!("{}", flows_table(&f)),
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

/// What a reload changed, one line per kind of change.
fn reload_table(r: &causeway_api::ReloadResult) -> String {
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut rows = vec![
        vec!["added".to_string(), list(&r.added)],
        vec!["removed".to_string(), list(&r.removed)],
        vec!["updated".to_string(), list(&r.updated)],
        vec!["unchanged".to_string(), list(&r.unchanged)],
    ];
    if !r.resized.is_empty() {
        rows.push(vec!["resized".to_string(), list(&r.resized)]);
    }
    for e in &r.errors {
        rows.push(vec!["error".to_string(), e.clone()]);
    }
    format!("reloaded {}\n{}", r.config, table(&rows))
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
            if g.shaping {
                rate(g.bits_per_sec)
            } else {
                "unshaped".into()
            },
            if g.shaping {
                g.packets_per_sec.map_or("-".into(), |p| p.to_string())
            } else {
                "unshaped".into()
            },
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

/// A flow table's counts on one line.
fn flow_counts(c: &FlowCounts) -> String {
    format!(
        "{}/{} flows, {} new/s max, created {}, expired {}, refused: table full {}, new-flow rate {}",
        c.active,
        c.max_flows,
        c.new_flows_per_sec
            .map_or_else(|| "no".to_string(), |r| r.to_string()),
        c.created,
        c.expired,
        c.refused_full,
        c.refused_rate
    )
}

fn secs(s: f64) -> String {
    format!("{s:.1}s")
}

fn endpoint(addr: &str, port: u16, protocol: &str) -> String {
    let a = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    };
    match protocol {
        "tcp" | "udp" => format!("{a}:{port}"),
        "icmp" | "icmpv6" if port != 0 => format!("{a} id {port}"),
        _ => a,
    }
}

fn flows_table(gateways: &[GatewayFlows]) -> String {
    let mut out = String::new();
    for (i, g) in gateways.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "gateway {} ({}): {}\n",
            g.gateway,
            g.gateway_type,
            flow_counts(&g.counts)
        ));
        let mut rows = vec![vec![
            "PROTO".to_string(),
            "SOURCE".into(),
            "DESTINATION".into(),
            "STATE".into(),
            "PACKETS".into(),
            "BYTES".into(),
            "AGE".into(),
            "IDLE".into(),
            "CONNECTION".into(),
        ]];
        for f in &g.flows {
            rows.push(vec![
                f.protocol.clone(),
                endpoint(&f.src, f.src_port, &f.protocol),
                endpoint(&f.dst, f.dst_port, &f.protocol),
                f.state.clone(),
                format!("{}/{}", f.packets_orig, f.packets_reply),
                format!("{}/{}", f.bytes_orig, f.bytes_reply),
                secs(f.age_secs),
                secs(f.idle_secs),
                f.connection.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out
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
    let mut flows = vec![vec![
        "GATEWAY".to_string(),
        "FLOWS".into(),
        "LIMIT".into(),
        "NEW/S LIMIT".into(),
        "CREATED".into(),
        "EXPIRED".into(),
        "FLOW_TABLE_FULL".into(),
        "NEW_FLOW_RATE".into(),
    ]];
    for g in &s.gateways {
        if let Some(c) = &g.flows {
            flows.push(vec![
                g.name.clone(),
                c.active.to_string(),
                c.max_flows.to_string(),
                c.new_flows_per_sec.map_or("-".into(), |r| r.to_string()),
                c.created.to_string(),
                c.expired.to_string(),
                c.refused_full.to_string(),
                c.refused_rate.to_string(),
            ]);
        }
    }
    if flows.len() > 1 {
        out.push('\n');
        out.push_str(&table(&flows));
    }
    if let Some(i) = &s.ike {
        let nz: Vec<String> = i
            .drops
            .iter()
            .filter(|(_, v)| **v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let rows = vec![
            vec![
                "IKE".to_string(),
                "DATAGRAMS".into(),
                "COOKIES SENT".into(),
                "HALF-OPEN".into(),
                "DROPS".into(),
                "BY REASON".into(),
            ],
            vec![
                "ike".to_string(),
                i.datagrams.to_string(),
                i.cookies_sent.to_string(),
                i.half_open.to_string(),
                i.total_drops().to_string(),
                if nz.is_empty() {
                    "-".into()
                } else {
                    nz.join(" ")
                },
            ],
        ];
        out.push('\n');
        out.push_str(&table(&rows));
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
    fn args_are_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn completions_mention_the_subcommands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = String::from_utf8(completion_script(shell)).unwrap();
            assert!(!script.is_empty(), "{shell:?}");
            for word in [
                "causeway",
                "status",
                "stats",
                "flows",
                "completions",
                "socket",
            ] {
                assert!(script.contains(word), "{shell:?} script lacks `{word}`");
            }
        }
    }

    #[test]
    fn completions_parse_without_a_daemon() {
        let a = Args::try_parse_from(["causeway", "completions", "zsh"]).unwrap();
        assert!(matches!(
            a.command,
            Command::Completions {
                shell: CompletionShell::Zsh
            }
        ));
        assert!(Args::try_parse_from(["causeway", "completions", "tcsh"]).is_err());
    }

    #[test]
    fn long_help_is_man_like() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for section in [
            "DESCRIPTION:",
            "FILES:",
            "SIGNALS:",
            "EXIT STATUS:",
            "EXAMPLES:",
            DEFAULT_SOCKET,
            "completions",
        ] {
            assert!(help.contains(section), "`{section}` missing from:\n{help}");
        }
    }

    #[test]
    fn flows_args_and_table() {
        let a = Args::try_parse_from(["causeway", "flows", "--gateway", "er-gw", "--top", "5"])
            .unwrap();
        assert!(matches!(
            a.command,
            Command::Flows { gateway: Some(ref g), top: Some(5) } if g == "er-gw"
        ));
        assert!(Args::try_parse_from(["causeway", "flows", "--top", "x"]).is_err());
        let g = GatewayFlows {
            gateway: "er-gw".into(),
            gateway_type: "ExpressRoute".into(),
            counts: FlowCounts {
                active: 1,
                max_flows: 20,
                new_flows_per_sec: Some(5),
                ..Default::default()
            },
            flows: vec![causeway_api::FlowEntry {
                protocol: "tcp".into(),
                src: "10.1.0.10".into(),
                dst: "fd00:2::10".into(),
                src_port: 40000,
                dst_port: 5201,
                state: "tcp_established".into(),
                packets_orig: 3,
                packets_reply: 2,
                bytes_orig: 180,
                bytes_reply: 120,
                age_secs: 1.75,
                idle_secs: 0.5,
                expires_in_secs: 299.5,
                connection: Some("circuit-1".into()),
            }],
        };
        let t = flows_table(&[g]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("gateway er-gw (ExpressRoute): 1/20 flows"),
            "{t}"
        );
        assert!(lines[1].starts_with("PROTO"), "{t}");
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "tcp",
                "10.1.0.10:40000",
                "[fd00:2::10]:5201",
                "tcp_established",
                "3/2",
                "180/120",
                "1.8s",
                "0.5s",
                "circuit-1"
            ]
        );
    }

    #[test]
    fn rates() {
        assert_eq!(rate(1_000_000_000), "1 Gbit/s");
        assert_eq!(rate(650_000_000), "650 Mbit/s");
    }
}
