use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lb::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        lb::cli::LogFormat::Human => log.init(),
        lb::cli::LogFormat::Json => log.json().flatten_event(true).init(),
    }
    lb::cli::main(cli)
}
