//! `tracer top`: a full-screen view, refreshed live, of what is in trouble now. A tracing
//! session like `live` (the same in-kernel filters) whose only sink on screen is
//! [`Screen`]; on quit (q, Ctrl-C, SIGTERM, `--duration`) the terminal is restored and the
//! session's summary printed.

use std::{
    fs::File,
    io::{IsTerminal, Read, Seek, Stdout, Write},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        event::{self, Event as TermEvent},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
};

use crate::{
    cli::TopArgs,
    event::Event,
    output::{Flow, Sink, Status, Summary, text::use_color, top::Screen},
    record::{End, Header, Lost},
    session,
    timeline::{Engine, Verdict},
};

pub async fn run(args: TopArgs) -> Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "tracer top draws on a terminal, and stdout is not one: `tracer live` prints lines, \
             `tracer live --json` records"
        );
    }
    let mut top = Top {
        screen: Screen::new(use_color(args.color, true)),
        terminal: None,
        stderr: None,
    };
    let mut summary = Summary::new();
    let result = session::run(
        &args.session,
        &mut [&mut top as &mut dyn Sink, &mut summary],
    )
    .await;
    top.leave();
    let totals = result?;
    print!("{}", summary.render(&super::live::extra(&totals)));
    Ok(())
}

/// The screen on the terminal: entered at the first tick (once the tracer's start-up
/// messages are out), left at the end of the session or when dropped (an error, a panic).
struct Top {
    screen: Screen,
    terminal: Option<Terminal<CrosstermBackend<Stdout>>>,
    /// Messages written to stderr while the screen is up, shown after it.
    stderr: Option<StderrCapture>,
}

impl Top {
    fn enter(&mut self) -> Result<()> {
        enable_raw_mode().context("setting up the terminal")?;
        let mut stdout = std::io::stdout();
        execute!(stdout, EnterAlternateScreen, Hide).context("setting up the terminal")?;
        self.stderr = StderrCapture::start();
        let mut terminal =
            Terminal::new(CrosstermBackend::new(stdout)).context("setting up the terminal")?;
        terminal.clear()?;
        self.terminal = Some(terminal);
        Ok(())
    }

    /// Back to the terminal as it was; what was written to stderr meanwhile follows.
    fn leave(&mut self) {
        if self.terminal.take().is_some() {
            let _ = disable_raw_mode();
            let _ = execute!(std::io::stdout(), LeaveAlternateScreen, Show);
        }
        if let Some(capture) = self.stderr.take() {
            let text = capture.stop();
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }

    /// Keys typed since the last tick.
    fn input(&mut self) -> Result<Flow> {
        let mut flow = Flow::Continue;
        while event::poll(Duration::ZERO).context("reading the keyboard")? {
            if let TermEvent::Key(key) = event::read().context("reading the keyboard")?
                && self.screen.key(key) == Flow::Stop
            {
                flow = Flow::Stop;
            }
        }
        Ok(flow)
    }
}

impl Drop for Top {
    fn drop(&mut self) {
        self.leave();
    }
}

impl Sink for Top {
    fn header(&mut self, header: &Header) -> Result<()> {
        self.screen
            .started(&header.hostname, header.boot_to_wall_offset_ns);
        Ok(())
    }

    fn event(&mut self, _event: &Event) -> Result<()> {
        Ok(())
    }

    fn verdict(&mut self, verdict: &Verdict) -> Result<()> {
        self.screen.verdict(verdict);
        Ok(())
    }

    fn lost(&mut self, _lost: &Lost) -> Result<()> {
        Ok(())
    }

    fn end(&mut self, _end: &End) -> Result<()> {
        self.leave();
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    fn status(&mut self, status: &Status) -> Result<()> {
        self.screen.status(*status);
        Ok(())
    }

    fn tick(&mut self, engine: &Engine, now_ns: u64) -> Result<Flow> {
        if self.terminal.is_none() {
            self.enter()?;
        }
        let flow = self.input()?;
        self.screen.observe(engine, now_ns);
        if let Some(terminal) = &mut self.terminal {
            terminal
                .draw(|f| self.screen.render(f))
                .context("drawing the screen")?;
        }
        Ok(flow)
    }
}

/// Stderr sent to an anonymous file while the screen is up: a warning written across the
/// screen would stay there until the next full redraw.
struct StderrCapture {
    saved: OwnedFd,
    file: File,
}

impl StderrCapture {
    fn start() -> Option<StderrCapture> {
        // SAFETY: plain system calls on descriptors this function owns; each result is
        // checked before use.
        unsafe {
            let memfd = libc::memfd_create(c"tracer-top-stderr".as_ptr(), libc::MFD_CLOEXEC);
            if memfd < 0 {
                return None;
            }
            let file = File::from_raw_fd(memfd);
            let saved = libc::fcntl(libc::STDERR_FILENO, libc::F_DUPFD_CLOEXEC, 0);
            if saved < 0 {
                return None;
            }
            let saved = OwnedFd::from_raw_fd(saved);
            if libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) < 0 {
                return None;
            }
            Some(StderrCapture { saved, file })
        }
    }

    /// Stderr back where it was; returns what was written meanwhile.
    fn stop(mut self) -> String {
        // SAFETY: `saved` is a valid descriptor owned by self.
        unsafe { libc::dup2(self.saved.as_raw_fd(), libc::STDERR_FILENO) };
        let mut text = String::new();
        if self.file.rewind().is_ok() {
            let _ = self.file.read_to_string(&mut text);
        }
        text
    }
}
