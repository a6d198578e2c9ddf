use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lb::cli::Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // `lb run --program-log LEVEL`: the program's lines (their target is its crate) pass.
    if let Some(d) = cli.program_log_directive().and_then(|d| d.parse().ok()) {
        filter = filter.add_directive(d);
    }
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not for a log file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        lb::cli::LogFormat::Human => log.init(),
        lb::cli::LogFormat::Json => log.json().flatten_event(true).init(),
    }
    lb::cli::main(cli)
}
