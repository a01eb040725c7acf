//! `causewayd`: the Causeway gateway daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Causeway gateway daemon: bridges a VNet-side TUN and on-premises connections, each gateway held
/// to its SKU.
///
/// Runs in the foreground and logs to stderr (level from RUST_LOG, default `info`). Stop it with
/// SIGINT or SIGTERM: the TUNs it created are removed. `causeway` talks to it over the control
/// socket set by `[control] socket` in the config.
#[derive(Parser, Debug)]
#[command(name = "causewayd", version, about, long_about)]
struct Args {
    /// The configuration file (TOML).
    #[arg(short, long, value_name = "PATH")]
    config: PathBuf,
    /// Validate the configuration, print every error, and exit (0: valid, 1: invalid).
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match causewayd::config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "{}: {} error(s); nothing was started",
                args.config.display(),
                errors.0.len()
            );
            return ExitCode::from(1);
        }
    };
    if args.check {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    match causewayd::daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("causewayd: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
