use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracer::{
    cli::{Cli, Command, LiveArgs},
    commands,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`tracer report t.jsonl | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed and why, no backtrace.
            eprintln!("tracer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Live(LiveArgs::default()));
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "tracer", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Live(args) => runtime()?.block_on(commands::live::live(args)),
        Command::Record(args) => runtime()?.block_on(commands::live::record(args)),
        Command::Top(args) => runtime()?.block_on(commands::top::run(args)),
        Command::Agent(args) => runtime()?.block_on(commands::agent::run(args)),
        Command::Report(args) => commands::report::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Sockets(args) => commands::sockets::run(args),
        Command::Doctor(args) => commands::doctor::run(args),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == BrokenPipe)
            // JSON written with serde_json carries the I/O error inside its own.
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|json| json.io_error_kind() == Some(BrokenPipe))
    })
}

/// One thread is plenty: the work is reading a ring buffer and formatting lines.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
