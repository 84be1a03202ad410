//! `tracer live` (terminal or JSON Lines on stdout) and `tracer record -o FILE` (JSON Lines
//! or binary).

use std::io::IsTerminal;

use anyhow::Result;

use crate::{
    cli::{LiveArgs, RecordArgs, Show},
    output::{JsonLines, Sink, Summary, Text, summary::Extra, text::use_color, trace_sink},
    session::{self, Totals},
};

pub async fn live(args: LiveArgs) -> Result<()> {
    let stdout = std::io::stdout();
    let show = if args.verdicts {
        Show::Verdicts
    } else {
        args.show
    };
    let mut summary = Summary::new();
    if args.json {
        let mut sink = JsonLines::new(stdout.lock(), "stdout");
        let totals = session::run(
            &args.session,
            &mut [&mut sink as &mut dyn Sink, &mut summary],
        )
        .await?;
        // stdout carries data: the summary goes to stderr.
        eprint!("{}", summary.render(&extra(&totals)));
    } else {
        let color = use_color(args.color, std::io::stdout().is_terminal());
        let mut sink = Text::new(stdout.lock(), color).with_status_line();
        sink.show_events = show != Show::Verdicts;
        sink.show_verdicts = show != Show::Events;
        sink.verbose = args.verbose;
        let totals = session::run(
            &args.session,
            &mut [&mut sink as &mut dyn Sink, &mut summary],
        )
        .await?;
        drop(sink);
        print!("{}", summary.render(&extra(&totals)));
    }
    Ok(())
}

pub(super) fn extra(totals: &Totals) -> Extra {
    Extra {
        filtered: totals.ring.filtered,
        owner_filtered: totals.identity.dropped,
        engine: totals.engine,
    }
}

pub async fn record(args: RecordArgs) -> Result<()> {
    let mut sink = trace_sink(&args.output, args.format)?;
    let totals = session::run(&args.session, &mut [&mut *sink as &mut dyn Sink]).await?;
    eprintln!(
        "tracer: recorded {} events and {} verdicts to {} ({} lost, {} filtered out in the kernel, \
         {} by the owner filter; {} TCP timer runs, {} probes, {} of them found late)",
        totals.events,
        totals.verdicts,
        args.output.display(),
        totals.ring.lost,
        totals.ring.filtered,
        totals.identity.dropped,
        totals.ring.timer_brackets,
        totals.ring.probes_seen,
        totals.ring.probes_late
    );
    Ok(())
}
