//! `causewayd`: the Causeway gateway daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// The DESCRIPTION section of `causewayd --help` (`-h` prints only the first line).
const LONG_ABOUT: &str = "\
The Causeway gateway daemon.

DESCRIPTION:
  causewayd reads a configuration file (TOML), creates the VNet-side TUN and the TUNs of the
  ExpressRoute circuits (each in the named network namespace its `netns` gives, else in the
  daemon's own), binds the UDP sockets of the IPsec tunnels in its own network namespace, and
  forwards packets between the VNet and the on-premises connections, each gateway held to its
  SKU. `causeway` queries it over its control socket.

  It runs in the foreground until SIGINT or SIGTERM and logs to stderr. Every start first
  validates the whole file; with --check it only does that. It needs CAP_NET_ADMIN (TUNs,
  addresses and routes, set with iproute2's `ip`), CAP_NET_BIND_SERVICE (IKE on UDP 500) and,
  when the config names a `netns`, CAP_SYS_ADMIN (entering it); in practice, run it as root.";

/// The FILES, ENVIRONMENT, SIGNALS, EXIT STATUS and EXAMPLES sections of `causewayd --help`.
const AFTER_LONG_HELP: &str = "\
FILES:
  --config PATH
      The configuration file; there is no default path (the systemd unit in configs/ uses
      /etc/causeway/causewayd.toml). A `shared_key_file` it names must be mode 0600 or stricter.
  /run/causeway/control.sock
      The control socket (`[control] socket`). The daemon creates its parent directory, refuses
      to start if a running daemon answers there, removes a stale file, binds it with mode 0600
      and removes it on exit.
  /var/lib/causeway
      The state directory (`[control] state_dir`): one `esp-<out_spi>.lease` per outbound
      manually keyed SA, recording how far its sequence numbers may go. Remove a lease only
      together with new keys at both ends.
  /dev/net/tun
      Opened to create every TUN.
  /run/netns/NAME
      A named network namespace (made by `ip netns add NAME`) that a `netns` setting names.

ENVIRONMENT:
  RUST_LOG   Log filter (tracing-subscriber EnvFilter syntax); default `info`.
  NO_COLOR   When set, human logs have no colour (they have none when stderr is not a terminal).
  PATH       Where `ip` is looked for, then /usr/sbin, /sbin, /usr/bin, /bin.

SIGNALS:
  SIGINT, SIGTERM
      Stop: the daemon logs `stopping`, stops forwarding, removes the control socket, closes its
      TUNs (the kernel removes them with their addresses and routes) and sockets, logs `stopped`
      and exits with status 0.
  SIGHUP
      Reload: re-read the config file and apply the difference (added connections come up,
      removed ones go down, unchanged ones are not touched); an invalid file or a change that
      needs a restart is refused whole and logged. `causeway reload` does the same and prints
      the outcome.
  Other signals are not handled.

EXIT STATUS:
  0  --check on a valid file, or a clean stop after SIGINT/SIGTERM.
  1  The file is invalid or unreadable (every error is printed), or starting failed
     (`causewayd: error: ...` on stderr).
  2  A command-line usage error.

EXAMPLES:
  Validate a configuration without touching the system:
      causewayd --check -c /etc/causeway/causewayd.toml
  Run in the foreground with debug logs:
      RUST_LOG=debug causewayd -c /etc/causeway/causewayd.toml
  Log one JSON object per line (for a log collector):
      causewayd -c /etc/causeway/causewayd.toml --log-format json
  Put the underlay (the tunnels' UDP sockets) in a network namespace of its own:
      ip netns exec UNDERLAY causewayd -c /etc/causeway/causewayd.toml";

#[derive(Parser, Debug)]
#[command(
    name = "causewayd",
    version,
    about = "The Causeway gateway daemon.",
    long_about = LONG_ABOUT,
    after_long_help = AFTER_LONG_HELP
)]
struct Args {
    /// The configuration file (TOML).
    #[arg(short, long, value_name = "PATH")]
    config: PathBuf,
    /// Validate the configuration, print every error, and exit (0: valid, 1: invalid).
    #[arg(long)]
    check: bool,
    /// Log format on stderr.
    ///
    /// `human`: one line per event, coloured only when stderr is a terminal and NO_COLOR is not
    /// set. `json`: one JSON object per line, with `timestamp`, `level`, `target` and `fields`
    /// (the message and the event's fields); never coloured.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// The format of the log on stderr.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber: stderr, the RUST_LOG filter (default `info`), `format`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match format {
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.log_format);
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn args_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn long_help_is_man_like() {
        let help = Args::command().render_long_help().to_string();
        for section in [
            "DESCRIPTION:",
            "FILES:",
            "SIGNALS:",
            "EXIT STATUS:",
            "EXAMPLES:",
            "SIGTERM",
            "/run/causeway/control.sock",
            "/var/lib/causeway",
            "--log-format",
        ] {
            assert!(help.contains(section), "`{section}` missing from:\n{help}");
        }
    }

    #[test]
    fn help_paths_are_the_defaults() {
        assert!(AFTER_LONG_HELP.contains(causewayd::config::DEFAULT_CONTROL_SOCKET));
        assert!(AFTER_LONG_HELP.contains(causewayd::config::DEFAULT_STATE_DIR));
    }

    #[test]
    fn log_format_defaults_to_human() {
        let a = Args::try_parse_from(["causewayd", "-c", "x.toml"]).unwrap();
        assert_eq!(a.log_format, LogFormat::Human);
        let a =
            Args::try_parse_from(["causewayd", "-c", "x.toml", "--log-format", "json"]).unwrap();
        assert_eq!(a.log_format, LogFormat::Json);
        assert!(Args::try_parse_from(["causewayd", "-c", "x", "--log-format", "xml"]).is_err());
    }
}
