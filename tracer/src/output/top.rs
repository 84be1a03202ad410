//! `tracer top`: what is in trouble right now, on one screen, redrawn four times a second.
//!
//! ```text
//! tracer top · vm · 10:42:07 · 1204 events/s · 35 sockets · 2 verdicts · 0 lost
//! Unresponsive peers: the kernel gives up in
//!   GIVE UP IN         PEER                   PROCESS          RTOs  SILENT
//!   4.2 s              10.0.0.2:443           curl/4242           4   2.1 s
//! Retransmitting
//!   RATE/s  RTOs  TOTAL  PEER                 PROCESS
//! Dead sockets held · CLOSE_WAIT
//!   AGE      STATE         PEER               PROCESS          ERROR
//! Verdicts                                       by process
//!   retries_exhausted  1  12 s ago               curl          1
//! q quit  s sort: urgency  / filter  ? help
//! ```
//!
//! [`Screen`] is the model: it reads the engine through its read-only view
//! ([`Timeline::rto_streak`], [`Timeline::dead_held`], the state and since when), tallies
//! verdicts as they come, and draws itself into any ratatui backend. The terminal, the
//! keyboard and the session are `commands/top.rs`'.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use ratatui::{
    Frame,
    crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Row, Table},
};

use super::{Flow, Status, text::clock_time};
use crate::{
    event::{Connection, Errno, Owner, SocketId, TcpState},
    timeline::{Engine, RtoStreak, Timeline, Verdict, VerdictKind},
    words::duration_ms,
};

/// How long a peer that stopped being unresponsive stays on screen with its outcome.
const LINGER_NS: u64 = 60_000_000_000;
/// Retransmit rates are measured over this window.
const RATE_WINDOW_NS: u64 = 10_000_000_000;
/// Wide enough for the local end and the namespace too.
const WIDE: u16 = 110;

/// The order of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Most pressing first: the soonest give-up, the highest rate, the oldest dead socket.
    #[default]
    Urgency,
    /// Most consecutive RTOs first.
    Rtos,
    Peer,
    Process,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Urgency => Sort::Rtos,
            Sort::Rtos => Sort::Peer,
            Sort::Peer => Sort::Process,
            Sort::Process => Sort::Urgency,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Urgency => "urgency",
            Sort::Rtos => "RTOs",
            Sort::Peer => "peer",
            Sort::Process => "process",
        }
    }
}

/// A socket as rows name it.
#[derive(Debug, Clone)]
struct Who {
    conn: Connection,
    process: Option<Owner>,
}

impl Who {
    fn of(t: &Timeline) -> Who {
        Who {
            conn: t.conn,
            process: t.process.clone(),
        }
    }

    fn peer(&self) -> String {
        self.conn.remote().to_string()
    }

    fn owner(&self) -> String {
        Owner::label(self.process.as_ref())
    }

    /// The filter matches any of peer, local end, owner (case-insensitive).
    fn matches(&self, filter: &str) -> bool {
        filter.is_empty()
            || [self.peer(), self.conn.local().to_string(), self.owner()]
                .iter()
                .any(|s| s.to_lowercase().contains(filter))
    }
}

/// How an unresponsive peer's streak ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The connection died: its verdict.
    Verdict(VerdictKind),
    /// The peer acknowledged again.
    Recovered,
    /// The socket was released before any verdict.
    Closed,
}

/// A peer that is not acknowledging (the early warning was given), and afterwards what
/// became of it.
#[derive(Debug, Clone)]
struct Peer {
    who: Who,
    streak: RtoStreak,
    ended: Option<(Outcome, u64)>,
}

#[derive(Debug, Clone)]
struct Retransmitting {
    who: Who,
    per_sec: f64,
    consecutive_rtos: u8,
    total: u32,
}

#[derive(Debug, Clone)]
enum HeldKind {
    Dead { error: Errno, flagged: bool },
    CloseWait,
}

#[derive(Debug, Clone)]
struct Held {
    who: Who,
    kind: HeldKind,
    since_ns: u64,
}

/// Verdicts so far, by kind and by owner.
#[derive(Debug, Default)]
struct Tally {
    by_kind: BTreeMap<VerdictKind, (u64, u64)>,
    by_owner: BTreeMap<String, (u64, u64)>,
}

/// What verdicts are grouped by, besides their kind: the owner's command name.
fn owner_group(process: Option<&Owner>) -> String {
    process.map_or_else(|| "-".to_owned(), |p| p.comm.to_string())
}

/// Everything `tracer top` shows, and the user's choices (sort, filter, help).
#[derive(Debug)]
pub struct Screen {
    color: bool,
    hostname: String,
    offset_ns: i64,
    now_ns: u64,
    status: Status,
    peers: BTreeMap<SocketId, Peer>,
    retransmitting: Vec<Retransmitting>,
    /// Retransmit totals per socket at past ticks, over the rate window.
    history: HashMap<SocketId, VecDeque<(u64, u32)>>,
    held: Vec<Held>,
    tally: Tally,
    sort: Sort,
    filter: String,
    editing: bool,
    help: bool,
}

impl Screen {
    pub fn new(color: bool) -> Screen {
        Screen {
            color,
            hostname: String::new(),
            offset_ns: 0,
            now_ns: 0,
            status: Status::default(),
            peers: BTreeMap::new(),
            retransmitting: Vec::new(),
            history: HashMap::new(),
            held: Vec::new(),
            tally: Tally::default(),
            sort: Sort::default(),
            filter: String::new(),
            editing: false,
            help: false,
        }
    }

    /// Where and since when (from the trace header).
    pub fn started(&mut self, hostname: &str, boot_to_wall_offset_ns: i64) {
        self.hostname = hostname.to_owned();
        self.offset_ns = boot_to_wall_offset_ns;
    }

    pub fn status(&mut self, status: Status) {
        self.status = status;
    }

    /// Reads what every socket is going through now.
    pub fn observe(&mut self, engine: &Engine, now_ns: u64) {
        self.now_ns = now_ns;
        self.retransmitting.clear();
        self.held.clear();
        let mut seen = HashSet::new();
        for t in engine.timelines() {
            seen.insert(t.socket);
            let streak = t.rto_streak();
            let per_sec = self.rate(t, now_ns);
            match streak {
                Some(streak) if streak.warned => {
                    self.peers.insert(
                        t.socket,
                        Peer {
                            who: Who::of(t),
                            streak,
                            ended: None,
                        },
                    );
                }
                _ => {
                    if let Some(peer) = self.peers.get_mut(&t.socket)
                        && peer.ended.is_none()
                    {
                        let death = t
                            .verdicts
                            .iter()
                            .find(|v| v.verdict.is_death() && v.ts_ns >= peer.streak.first_ns);
                        let outcome =
                            death.map_or(Outcome::Recovered, |v| Outcome::Verdict(v.verdict));
                        peer.ended = Some((outcome, now_ns));
                    }
                    // A peer already shown above, or a connection over, is no longer
                    // retransmitting.
                    let shown = self.peers.contains_key(&t.socket);
                    if (streak.is_some() || per_sec > 0.0) && !shown && t.state != TcpState::CLOSE {
                        self.retransmitting.push(Retransmitting {
                            who: Who::of(t),
                            per_sec,
                            consecutive_rtos: streak.map_or(0, |s| s.consecutive_rtos),
                            total: t.retransmits(),
                        });
                    }
                }
            }
            if let Some(dead) = t.dead_held() {
                self.held.push(Held {
                    who: Who::of(t),
                    kind: HeldKind::Dead {
                        error: dead.error,
                        flagged: dead.flagged,
                    },
                    since_ns: dead.since_ns,
                });
            } else if t.state == TcpState::CLOSE_WAIT {
                self.held.push(Held {
                    who: Who::of(t),
                    kind: HeldKind::CloseWait,
                    since_ns: t.state_since_ns,
                });
            }
        }
        for (socket, peer) in &mut self.peers {
            if peer.ended.is_none() && !seen.contains(socket) {
                peer.ended = Some((Outcome::Closed, now_ns));
            }
        }
        self.peers.retain(|_, p| {
            p.ended
                .is_none_or(|(_, at)| now_ns.saturating_sub(at) < LINGER_NS)
        });
        self.history.retain(|socket, _| seen.contains(socket));
    }

    /// Retransmits per second of `t` over the rate window, its history updated.
    fn rate(&mut self, t: &Timeline, now_ns: u64) -> f64 {
        let total = t.retransmits();
        if total == 0 {
            return 0.0;
        }
        let samples = self
            .history
            .entry(t.socket)
            .or_insert_with(|| VecDeque::from([(t.first_ns, 0)]));
        samples.push_back((now_ns, total));
        while samples.len() > 2 && samples[1].0 + RATE_WINDOW_NS <= now_ns {
            samples.pop_front();
        }
        let (since_ns, before) = samples[0];
        let secs = now_ns.saturating_sub(since_ns) as f64 / 1e9;
        if secs <= 0.0 || total <= before {
            0.0
        } else {
            f64::from(total - before) / secs.max(1.0)
        }
    }

    /// A verdict as it is reached.
    pub fn verdict(&mut self, v: &Verdict) {
        let kind = self.tally.by_kind.entry(v.verdict).or_default();
        kind.0 += 1;
        kind.1 = kind.1.max(v.ts_ns);
        let owner = self
            .tally
            .by_owner
            .entry(owner_group(v.process.as_ref()))
            .or_default();
        owner.0 += 1;
        owner.1 = owner.1.max(v.ts_ns);
        if v.verdict.is_death()
            && let Some(peer) = self.peers.get_mut(&v.socket)
            && !matches!(peer.ended, Some((Outcome::Verdict(_), _)))
        {
            peer.ended = Some((Outcome::Verdict(v.verdict), v.ts_ns.max(self.now_ns)));
        }
    }

    /// A key the user pressed; `Flow::Stop` to quit.
    pub fn key(&mut self, key: KeyEvent) -> Flow {
        if key.kind == KeyEventKind::Release {
            return Flow::Continue;
        }
        let ctrl_c =
            key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c');
        if ctrl_c {
            return Flow::Stop;
        }
        if self.editing {
            match key.code {
                KeyCode::Char(c) => self.filter.extend(c.to_lowercase()),
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Enter => self.editing = false,
                KeyCode::Esc => {
                    self.filter.clear();
                    self.editing = false;
                }
                _ => {}
            }
            return Flow::Continue;
        }
        match key.code {
            KeyCode::Char('q') => return Flow::Stop,
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('/') => self.editing = true,
            KeyCode::Esc => {
                self.filter.clear();
                self.help = false;
            }
            KeyCode::Char('?') | KeyCode::Char('h') => self.help = !self.help,
            _ => {}
        }
        Flow::Continue
    }

    fn style(&self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    fn verdict_style(&self, kind: VerdictKind) -> Style {
        let color = if kind == VerdictKind::PeerUnresponsive {
            Color::Yellow
        } else {
            Color::Red
        };
        self.style(color).add_modifier(Modifier::BOLD)
    }

    /// Time from `ns` to now, for people.
    fn ago(&self, ns: u64) -> String {
        duration_ms(self.now_ns.saturating_sub(ns) / 1_000_000)
    }

    fn sorted_peers(&self) -> Vec<&Peer> {
        let mut rows: Vec<&Peer> = self
            .peers
            .values()
            .filter(|p| p.who.matches(&self.filter))
            .collect();
        match self.sort {
            Sort::Urgency => rows.sort_by_key(|p| {
                (
                    p.ended.is_some(),
                    p.streak.give_up_ns.unwrap_or(u64::MAX),
                    p.who.peer(),
                )
            }),
            Sort::Rtos => rows.sort_by_key(|p| {
                (
                    p.ended.is_some(),
                    std::cmp::Reverse(p.streak.consecutive_rtos),
                    p.who.peer(),
                )
            }),
            Sort::Peer => rows.sort_by_key(|p| (p.who.peer(), p.who.owner())),
            Sort::Process => rows.sort_by_key(|p| (p.who.owner(), p.who.peer())),
        }
        rows
    }

    fn sorted_retransmitting(&self) -> Vec<&Retransmitting> {
        let mut rows: Vec<&Retransmitting> = self
            .retransmitting
            .iter()
            .filter(|r| r.who.matches(&self.filter))
            .collect();
        match self.sort {
            Sort::Urgency => rows.sort_by(|a, b| {
                b.per_sec
                    .total_cmp(&a.per_sec)
                    .then(b.consecutive_rtos.cmp(&a.consecutive_rtos))
            }),
            Sort::Rtos => rows.sort_by(|a, b| {
                b.consecutive_rtos
                    .cmp(&a.consecutive_rtos)
                    .then(b.per_sec.total_cmp(&a.per_sec))
            }),
            Sort::Peer => rows.sort_by_key(|r| (r.who.peer(), r.who.owner())),
            Sort::Process => rows.sort_by_key(|r| (r.who.owner(), r.who.peer())),
        }
        rows
    }

    fn sorted_held(&self) -> Vec<&Held> {
        let mut rows: Vec<&Held> = self
            .held
            .iter()
            .filter(|h| h.who.matches(&self.filter))
            .collect();
        match self.sort {
            Sort::Urgency | Sort::Rtos => rows.sort_by_key(|h| (h.since_ns, h.who.peer())),
            Sort::Peer => rows.sort_by_key(|h| (h.who.peer(), h.since_ns)),
            Sort::Process => rows.sort_by_key(|h| (h.who.owner(), h.since_ns)),
        }
        rows
    }

    /// Draws the whole screen.
    pub fn render(&self, f: &mut Frame) {
        let area = f.area();
        let wide = area.width >= WIDE;
        let peers = self.sorted_peers();
        let retrans = self.sorted_retransmitting();
        let held = self.sorted_held();
        let verdict_rows = self.tally.by_kind.len().max(self.tally.by_owner.len());
        let wanted = [peers.len(), retrans.len(), held.len(), verdict_rows];
        let heights = section_heights(area.height.saturating_sub(2), wanted);
        let [title, body, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let sections = Layout::vertical(heights.map(Constraint::Length)).split(body);
        f.render_widget(self.title_line(), title);
        self.render_peers(f, sections[0], &peers, wide);
        self.render_retransmitting(f, sections[1], &retrans, wide);
        self.render_held(f, sections[2], &held, wide);
        self.render_verdicts(f, sections[3]);
        f.render_widget(self.footer_line(), footer);
        if self.help {
            self.render_help(f, area);
        }
    }

    fn title_line(&self) -> Paragraph<'static> {
        let clock = clock_time(self.now_ns as i64 + self.offset_ns);
        let clock = clock.split('.').next().unwrap_or_default().to_owned();
        let s = &self.status;
        let mut spans = vec![Span::styled(
            format!(
                "tracer top · {} · {clock} · {:.0} events/s · {} sockets · {} verdicts · ",
                self.hostname, s.events_per_sec, s.sockets, s.verdicts
            ),
            Style::default().add_modifier(Modifier::REVERSED),
        )];
        let lost = format!("{} lost", s.lost);
        spans.push(if s.lost > 0 {
            Span::styled(
                lost,
                self.style(Color::Magenta)
                    .add_modifier(Modifier::REVERSED | Modifier::BOLD),
            )
        } else {
            Span::styled(lost, Style::default().add_modifier(Modifier::REVERSED))
        });
        Paragraph::new(Line::from(spans)).style(Style::default().add_modifier(Modifier::REVERSED))
    }

    fn footer_line(&self) -> Paragraph<'static> {
        let key = Style::default().add_modifier(Modifier::BOLD);
        let line = if self.editing {
            Line::from(vec![
                Span::styled("filter: ", key),
                Span::raw(format!("{}_", self.filter)),
                Span::raw("   Enter keep  Esc clear"),
            ])
        } else {
            let mut spans = vec![
                Span::styled("q", key),
                Span::raw(" quit  "),
                Span::styled("s", key),
                Span::raw(format!(" sort: {}  ", self.sort.name())),
                Span::styled("/", key),
                Span::raw(" filter  "),
                Span::styled("?", key),
                Span::raw(" help"),
            ];
            if !self.filter.is_empty() {
                spans.push(Span::raw(format!(
                    "   filter \"{}\" (Esc clears)",
                    self.filter
                )));
            }
            Line::from(spans)
        };
        Paragraph::new(line)
    }

    /// A section's title, with how many rows it has and how many fit.
    fn heading(&self, text: &str, rows: usize, shown: usize) -> Line<'static> {
        let count = match (rows, shown) {
            (0, _) => ": none".to_owned(),
            (n, s) if s < n => format!(" ({n}, {s} shown)"),
            (n, _) => format!(" ({n})"),
        };
        Line::from(vec![
            Span::styled(
                text.to_owned(),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(count),
        ])
    }

    fn table(
        &self,
        f: &mut Frame,
        area: Rect,
        title: Line<'static>,
        header: Vec<&'static str>,
        rows: Vec<Row<'static>>,
        widths: Vec<Constraint>,
    ) {
        let block = Block::default().borders(Borders::TOP).title(title);
        if rows.is_empty() {
            f.render_widget(block, area);
            return;
        }
        let header = Row::new(header).style(Style::default().add_modifier(Modifier::DIM));
        f.render_widget(
            Table::new(rows, widths)
                .header(header)
                .block(block)
                .column_spacing(1),
            area,
        );
    }

    fn render_peers(&self, f: &mut Frame, area: Rect, peers: &[&Peer], wide: bool) {
        let shown = usize::from(area.height.saturating_sub(2)).min(peers.len());
        let mut title = self.heading("Unresponsive peers", peers.len(), shown);
        if !peers.is_empty() {
            title.spans.push(Span::styled(
                " · counting down to the kernel's give-up",
                Style::default().add_modifier(Modifier::DIM),
            ));
        }
        let rows = peers[..shown]
            .iter()
            .map(|p| {
                let when = match p.ended {
                    Some((Outcome::Verdict(kind), _)) => {
                        Span::styled(kind.name().to_owned(), self.verdict_style(kind))
                    }
                    Some((Outcome::Recovered, _)) => {
                        Span::styled("recovered".to_owned(), self.style(Color::Green))
                    }
                    Some((Outcome::Closed, _)) => Span::raw("closed"),
                    None => match p.streak.give_up_ns {
                        Some(at) if at > self.now_ns => {
                            let left = (at - self.now_ns) / 1_000_000;
                            let color = if left < 10_000 {
                                Color::Red
                            } else {
                                Color::Yellow
                            };
                            Span::styled(
                                duration_ms(left),
                                self.style(color).add_modifier(Modifier::BOLD),
                            )
                        }
                        Some(_) => Span::styled(
                            "any moment".to_owned(),
                            self.style(Color::Red).add_modifier(Modifier::BOLD),
                        ),
                        None => Span::raw("-"),
                    },
                };
                // Silent since the streak's first RTO: until now, or until it ended.
                let until = p.ended.map_or(self.now_ns, |(_, at)| at);
                let silent = duration_ms(until.saturating_sub(p.streak.first_ns) / 1_000_000);
                let mut cells = vec![
                    Line::from(when),
                    Line::from(p.who.peer()),
                    Line::from(p.who.owner()),
                    Line::from(format!("{:>4}", p.streak.consecutive_rtos)),
                    Line::from(format!("{:>8}", silent)),
                ];
                if wide {
                    cells.push(Line::from(p.who.conn.local().to_string()));
                    cells.push(Line::from(p.who.conn.netns.to_string()));
                }
                Row::new(cells)
            })
            .collect();
        let mut header = vec!["GIVE UP IN", "PEER", "PROCESS", "RTOs", "  SILENT"];
        let mut widths = vec![
            Constraint::Length(17),
            Constraint::Min(21),
            Constraint::Length(18),
            Constraint::Length(4),
            Constraint::Length(9),
        ];
        if wide {
            header.extend(["LOCAL", "NETNS"]);
            widths.extend([Constraint::Min(21), Constraint::Length(10)]);
        }
        self.table(f, area, title, header, rows, widths);
    }

    fn render_retransmitting(
        &self,
        f: &mut Frame,
        area: Rect,
        rows: &[&Retransmitting],
        wide: bool,
    ) {
        let shown = usize::from(area.height.saturating_sub(2)).min(rows.len());
        let title = self.heading("Retransmitting", rows.len(), shown);
        let table_rows = rows[..shown]
            .iter()
            .map(|r| {
                let mut cells = vec![
                    Line::from(format!("{:>6.1}", r.per_sec)),
                    Line::from(format!("{:>4}", r.consecutive_rtos)),
                    Line::from(format!("{:>6}", r.total)),
                    Line::from(r.who.peer()),
                    Line::from(r.who.owner()),
                ];
                if wide {
                    cells.push(Line::from(r.who.conn.local().to_string()));
                    cells.push(Line::from(r.who.conn.netns.to_string()));
                }
                Row::new(cells)
            })
            .collect();
        let mut header = vec!["RATE/s", "RTOs", " TOTAL", "PEER", "PROCESS"];
        let mut widths = vec![
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Min(21),
            Constraint::Length(18),
        ];
        if wide {
            header.extend(["LOCAL", "NETNS"]);
            widths.extend([Constraint::Min(21), Constraint::Length(10)]);
        }
        self.table(f, area, title, header, table_rows, widths);
    }

    fn render_held(&self, f: &mut Frame, area: Rect, rows: &[&Held], wide: bool) {
        let shown = usize::from(area.height.saturating_sub(2)).min(rows.len());
        let title = self.heading("Dead sockets held · CLOSE_WAIT", rows.len(), shown);
        let table_rows = rows[..shown]
            .iter()
            .map(|h| {
                let (state, error) = match &h.kind {
                    HeldKind::Dead { error, flagged } => {
                        let style = if *flagged {
                            self.verdict_style(VerdictKind::DeadSocketHeld)
                        } else {
                            Style::default()
                        };
                        (
                            Span::styled("dead, held", style),
                            Span::raw(error.to_string()),
                        )
                    }
                    HeldKind::CloseWait => (Span::raw("CLOSE_WAIT"), Span::raw("")),
                };
                let mut cells = vec![
                    Line::from(format!("{:>8}", self.ago(h.since_ns))),
                    Line::from(state),
                    Line::from(h.who.peer()),
                    Line::from(h.who.owner()),
                    Line::from(error),
                ];
                if wide {
                    cells.push(Line::from(h.who.conn.local().to_string()));
                }
                Row::new(cells)
            })
            .collect();
        let mut header = vec!["     AGE", "STATE", "PEER", "PROCESS", "ERROR"];
        let mut widths = vec![
            Constraint::Length(9),
            Constraint::Length(10),
            Constraint::Min(21),
            Constraint::Length(18),
            Constraint::Length(12),
        ];
        if wide {
            header.push("LOCAL");
            widths.push(Constraint::Min(21));
        }
        self.table(f, area, title, header, table_rows, widths);
    }

    fn render_verdicts(&self, f: &mut Frame, area: Rect) {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(area);
        let total: u64 = self.tally.by_kind.values().map(|(n, _)| n).sum();
        let mut kinds: Vec<(&VerdictKind, &(u64, u64))> = self.tally.by_kind.iter().collect();
        kinds.sort_by_key(|(kind, (_, last))| (std::cmp::Reverse(*last), **kind));
        let shown = usize::from(area.height.saturating_sub(2));
        let title = self.heading("Verdicts by kind", kinds.len(), shown.min(kinds.len()));
        let rows: Vec<Row> = kinds
            .iter()
            .take(shown)
            .map(|(kind, (n, last))| {
                Row::new(vec![
                    Line::from(Span::styled(kind.name(), self.verdict_style(**kind))),
                    Line::from(format!("{n:>5}")),
                    Line::from(format!("{} ago", self.ago(*last))),
                ])
            })
            .collect();
        let title = if total > 0 {
            let mut t = title;
            t.spans.push(Span::raw(format!(", {total} in all")));
            t
        } else {
            title
        };
        self.table(
            f,
            left,
            title,
            vec!["KIND", "COUNT", "LAST"],
            rows,
            vec![
                Constraint::Length(19),
                Constraint::Length(5),
                Constraint::Min(10),
            ],
        );
        let mut owners: Vec<(&String, &(u64, u64))> = self.tally.by_owner.iter().collect();
        owners.sort_by_key(|(owner, (n, _))| (std::cmp::Reverse(*n), (*owner).clone()));
        let title = self.heading("by process", owners.len(), shown.min(owners.len()));
        let rows: Vec<Row> = owners
            .iter()
            .take(shown)
            .map(|(owner, (n, last))| {
                Row::new(vec![
                    Line::from((*owner).clone()),
                    Line::from(format!("{n:>5}")),
                    Line::from(format!("{} ago", self.ago(*last))),
                ])
            })
            .collect();
        self.table(
            f,
            right,
            title,
            vec!["PROCESS", "COUNT", "LAST"],
            rows,
            vec![
                Constraint::Min(10),
                Constraint::Length(5),
                Constraint::Min(10),
            ],
        );
    }

    fn render_help(&self, f: &mut Frame, area: Rect) {
        let lines = [
            "q, Ctrl-C  quit (prints the summary)",
            "s          sort: urgency, RTOs, peer, process",
            "/          filter by peer, local end or process",
            "Esc        clear the filter, close this help",
            "?          this help",
            "",
            "GIVE UP IN: when the kernel gives up on a peer that",
            "stopped acknowledging (tcp_retries2 or TCP_USER_TIMEOUT),",
            "then what became of the connection.",
        ];
        let width = (lines.iter().map(|l| l.len()).max().unwrap_or(0) as u16 + 4).min(area.width);
        let height = (lines.len() as u16 + 2).min(area.height);
        let popup = Rect {
            x: area.x + (area.width - width) / 2,
            y: area.y + (area.height - height) / 2,
            width,
            height,
        };
        f.render_widget(Clear, popup);
        f.render_widget(
            Paragraph::new(lines.map(Line::from).to_vec())
                .block(Block::default().borders(Borders::ALL).title(" keys ")),
            popup,
        );
    }
}

/// The heights of the four sections in `available` rows, for `wanted` rows of content
/// each: every section gets its title and, when it has rows, its header and at least one
/// row; what remains goes first to unresponsive peers, then dead sockets, retransmits and
/// verdicts. Space left over goes to the last section.
fn section_heights(available: u16, wanted: [usize; 4]) -> [u16; 4] {
    let need = |n: usize| if n == 0 { 1 } else { 2 + n as u16 };
    let mut heights = wanted.map(|n| need(n).min(3));
    let mut left = available.saturating_sub(heights.iter().sum());
    for i in [0, 2, 1, 3] {
        let more = need(wanted[i]).saturating_sub(heights[i]).min(left);
        heights[i] += more;
        left -= more;
    }
    heights[3] += left;
    heights
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{
        testing::{MS, Sock},
        timeline::Thresholds,
    };

    fn engine_with(socks: &[Sock], now_ns: u64) -> (Engine, Vec<Verdict>) {
        let mut engine = Engine::new(Thresholds::default());
        let mut out = Vec::new();
        let mut events: Vec<_> = socks.iter().flat_map(|s| s.events.clone()).collect();
        events.sort_by_key(|e| e.ts_ns);
        for e in events {
            engine.push(e, &mut out);
        }
        engine.tick(now_ns, &mut out);
        (engine, out)
    }

    fn draw(screen: &Screen, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| screen.render(f)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..height {
            for x in 0..width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
    }

    fn key(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
    }

    /// Socket 1's peer stopped answering (4 RTOs: warned); socket 2 retransmits once;
    /// socket 3 died of a reset and is still held; socket 4 is in CLOSE_WAIT.
    fn troubled() -> (Vec<Sock>, u64) {
        let unresponsive = Sock::new(1)
            .owner("client", 10)
            .user_timeout(60_000)
            .established()
            .rtos(4);
        let retrans = Sock::new(2).owner("batch", 20).established().rtos(1);
        let dead = Sock::new(3).owner("api", 30).peer_reset().error_report(104);
        let close_wait = Sock::new(4)
            .owner("worker", 40)
            .established()
            .state(TcpState::ESTABLISHED, TcpState::CLOSE_WAIT);
        let now = 5_000 * MS;
        (vec![unresponsive, retrans, dead, close_wait], now)
    }

    #[test]
    fn shows_what_is_in_trouble_in_80_by_24() {
        let (socks, now) = troubled();
        let (engine, verdicts) = engine_with(&socks, now);
        let mut screen = Screen::new(false);
        screen.started("vm", 0);
        screen.observe(&engine, now);
        for v in &verdicts {
            screen.verdict(v);
        }
        let text = draw(&screen, 80, 24);
        assert!(
            text.lines()
                .next()
                .unwrap()
                .starts_with("tracer top · vm · "),
            "{text}"
        );
        let row = line_with(&text, "10.0.0.2:80  ");
        assert!(row.contains("client/10"), "{row}");
        let streak = engine
            .timelines()
            .find(|t| t.socket == SocketId(1))
            .unwrap()
            .rto_streak()
            .unwrap();
        let left = duration_ms((streak.give_up_ns.unwrap() - now) / MS);
        assert!(row.trim_start().starts_with(&left), "{left:?} in {row}");
        assert!(line_with(&text, "batch/20").contains("   1 "), "{text}");
        let dead = line_with(&text, "api/30");
        assert!(
            dead.contains("dead, held") && dead.contains("ECONNRESET"),
            "{dead}"
        );
        assert!(
            line_with(&text, "worker/40").contains("CLOSE_WAIT"),
            "{text}"
        );
        assert!(line_with(&text, "peer_reset").contains("1"), "{text}");
        assert!(
            line_with(&text, "Verdicts by kind").contains("by process"),
            "{text}"
        );
        assert!(text.lines().last().unwrap().starts_with("q quit"), "{text}");
        // Nothing past 80 columns is lost: the widest rows fit.
        assert!(text.lines().all(|l| l.chars().count() == 80));
        // Wider, the local end and the namespace too.
        let wide = draw(&screen, 140, 40);
        assert!(
            line_with(&wide, "client/10").contains("10.0.0.1:40001"),
            "{wide}"
        );
    }

    #[test]
    fn the_countdown_runs_down_then_the_row_turns_into_its_verdict() {
        let s = Sock::new(1)
            .owner("client", 10)
            .user_timeout(6_000)
            .established()
            .rtos(3);
        let start = s.now + 100 * MS;
        let (engine, _) = engine_with(std::slice::from_ref(&s), start);
        let mut screen = Screen::new(false);
        screen.observe(&engine, start);
        let first = line_with(&draw(&screen, 80, 24), "client/10").to_owned();
        screen.observe(&engine, start + 1_000 * MS);
        let later = line_with(&draw(&screen, 80, 24), "client/10").to_owned();
        let seconds =
            |row: &str| -> f64 { row.split_whitespace().next().unwrap().parse().unwrap() };
        assert!(
            (seconds(&first) - seconds(&later) - 1.0).abs() < 0.05,
            "{first}\n{later}"
        );
        // The kernel gives up; the application then closes the socket.
        let dead = s
            .after_ms(3_000)
            .close_with(
                TcpState::ESTABLISHED,
                Errno::ETIMEDOUT,
                Some(crate::event::TimerKind::Write),
            )
            .destroy();
        let end = dead.now + 200 * MS;
        let (engine, verdicts) = engine_with(std::slice::from_ref(&dead), end);
        screen.observe(&engine, end);
        for v in &verdicts {
            screen.verdict(v);
        }
        let text = draw(&screen, 80, 24);
        let row = line_with(&text, "client/10");
        assert!(row.trim_start().starts_with("retries_exhausted"), "{text}");
        // It lingers a minute, then goes.
        screen.observe(&engine, end + 61_000 * MS);
        assert!(!draw(&screen, 80, 24).contains("client/10"));
    }

    #[test]
    fn keys_sort_filter_help_and_quit() {
        let (socks, now) = troubled();
        let (engine, _) = engine_with(&socks, now);
        let mut screen = Screen::new(false);
        screen.observe(&engine, now);
        assert_eq!(screen.key(key('s')), Flow::Continue);
        assert_eq!(screen.sort, Sort::Rtos);
        assert!(draw(&screen, 80, 24).contains("sort: RTOs"));
        for c in "/WORK".chars() {
            screen.key(key(c));
        }
        screen.key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        let filtered = draw(&screen, 80, 24);
        assert!(filtered.contains("worker/40"), "{filtered}");
        assert!(
            !filtered.contains("api/30") && !filtered.contains("client/10"),
            "{filtered}"
        );
        assert!(filtered.contains("filter \"work\""), "{filtered}");
        screen.key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert!(draw(&screen, 80, 24).contains("api/30"));
        screen.key(key('?'));
        assert!(draw(&screen, 80, 24).contains("sort: urgency, RTOs, peer, process"));
        assert_eq!(screen.key(key('q')), Flow::Stop);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(screen.key(ctrl_c), Flow::Stop);
    }

    #[test]
    fn colour_only_when_asked() {
        let (socks, now) = troubled();
        let (engine, verdicts) = engine_with(&socks, now);
        for color in [false, true] {
            let mut screen = Screen::new(color);
            screen.observe(&engine, now);
            for v in &verdicts {
                screen.verdict(v);
            }
            let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
            terminal.draw(|f| screen.render(f)).unwrap();
            let coloured = terminal
                .backend()
                .buffer()
                .content()
                .iter()
                .any(|c| c.fg != Color::Reset || c.bg != Color::Reset);
            assert_eq!(coloured, color);
        }
    }

    #[test]
    fn sections_share_the_height_most_pressing_first() {
        // Enough room: each gets what it needs, the rest goes to the verdicts.
        assert_eq!(section_heights(22, [1, 1, 0, 2]), [3, 3, 1, 15]);
        // Not enough: titles, headers and one row each, then peers, held, retransmits.
        assert_eq!(section_heights(22, [10, 10, 10, 10]), [12, 3, 4, 3]);
    }
}
