//! `lb stats --watch`: a live full-screen view of the counters, fetched from the agent every
//! period. One panel per VIP with a bar of each backend's share of its traffic and the rates
//! of the last second; the flow table and the outcomes below. `q`, Esc or Ctrl-C leaves it and
//! gives the terminal back as it was.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use ratatui::{
    DefaultTerminal, Frame,
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Table},
};

use crate::{
    api,
    stats::{self, Stats, VipStats, si},
};

/// Runs the view until the user quits.
pub fn run(socket: &Path, every: Duration) -> anyhow::Result<()> {
    // Raw mode and the alternate screen; a panic hook that gives the terminal back.
    let mut terminal = ratatui::try_init()?;
    let r = watch(&mut terminal, socket, every);
    ratatui::restore();
    r
}

fn watch(t: &mut DefaultTerminal, socket: &Path, every: Duration) -> anyhow::Result<()> {
    let mut updates = 0u64;
    loop {
        let fetched = api::get(socket, "/v1/stats")
            .and_then(|body| Ok(serde_json::from_str::<Stats>(&body)?))
            .map_err(|e| format!("{e:#}"));
        updates += 1;
        t.draw(|f| draw(f, socket, updates, &fetched))?;
        let next = Instant::now() + every;
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if !event::poll(left)? {
                break;
            }
            match event::read()? {
                Event::Key(k) if quits(k) => return Ok(()),
                Event::Resize(..) => {
                    t.draw(|f| draw(f, socket, updates, &fetched))?;
                }
                _ => {}
            }
        }
    }
}

fn quits(k: KeyEvent) -> bool {
    k.kind == KeyEventKind::Press
        && match k.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
            KeyCode::Char('c') => k.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

fn draw(f: &mut Frame, socket: &Path, updates: u64, fetched: &Result<Stats, String>) {
    let [head, body] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(f.area());
    f.render_widget(
        Line::from(vec![
            " lb stats ".bold().reversed(),
            format!(" {} · update {updates} · ", socket.display()).into(),
            "q".bold(),
            " quits".into(),
        ]),
        head,
    );
    let s = match fetched {
        Ok(s) => s,
        Err(e) => {
            f.render_widget(
                Paragraph::new(format!("cannot read the agent's counters: {e}"))
                    .style(Style::new().fg(Color::Red))
                    .block(Block::bordered()),
                body,
            );
            return;
        }
    };
    let outcomes = s.outcomes.iter().filter(|o| o.packets > 0).count().max(1);
    let mut rows: Vec<Constraint> = s
        .vips
        .iter()
        .map(|v| Constraint::Length(v.backends.len() as u16 + 3))
        .collect();
    rows.push(Constraint::Length(3));
    rows.push(Constraint::Length(outcomes as u16 + 2));
    rows.push(Constraint::Min(0));
    let areas = Layout::vertical(rows).split(body);
    for (v, area) in s.vips.iter().zip(areas.iter()) {
        vip(f, v, *area);
    }
    let n = s.vips.len();
    let ft = &s.flows;
    let ratio = if ft.capacity == 0 {
        0.0
    } else {
        (ft.entries as f64 / ft.capacity as f64).clamp(0.0, 1.0)
    };
    f.render_widget(
        Gauge::default()
            .block(Block::bordered().title(format!(
                " flow table: {} added, {} evicted, {} hits ",
                ft.inserted, ft.evicted, ft.hits
            )))
            .gauge_style(Style::new().fg(Color::Cyan))
            .ratio(ratio)
            .label(format!("{} of {} entries", ft.entries, ft.capacity)),
        areas[n],
    );
    let lines: Vec<Line> = if s.outcomes.iter().all(|o| o.packets == 0) {
        vec![Line::from("(no packets yet)")]
    } else {
        s.outcomes
            .iter()
            .filter(|o| o.packets > 0)
            .map(|o| {
                let style = if o.name.starts_with("drop") || o.name == "aborted" {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new()
                };
                Line::styled(
                    format!(
                        "{:<20} {:>14} packets {:>16} bytes {:>9} pps",
                        o.name,
                        o.packets,
                        o.bytes,
                        si(o.pps)
                    ),
                    style,
                )
            })
            .collect()
    };
    f.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" outcomes ")),
        areas[n + 1],
    );
}

fn vip(f: &mut Frame, v: &VipStats, area: Rect) {
    let title = Line::from(vec![
        Span::styled(
            format!(" {} ", v.name),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        format!(
            "{} {} · {} packets · {} pps · {}bit/s · {} new flows ",
            v.protocol,
            v.address,
            v.packets,
            si(v.pps),
            si(v.bps),
            v.new_flows
        )
        .into(),
    ]);
    let header = Row::new([
        "backend",
        "state",
        "weight",
        "share",
        "",
        "pps",
        "bit/s",
        "packets",
        "new flows",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = v.backends.iter().map(|b| {
        let state = if b.drain { "drain" } else { b.health.as_str() };
        let color = match state {
            "down" => Color::Red,
            "drain" => Color::Yellow,
            _ => Color::Green,
        };
        Row::new::<[Cell; 9]>([
            b.address.clone().into(),
            Span::styled(state.to_string(), Style::new().fg(color)).into(),
            b.weight.to_string().into(),
            Span::styled(stats::bar(b.share, 24), Style::new().fg(Color::Cyan)).into(),
            format!("{:5.1}%", b.share).into(),
            si(b.pps).into(),
            si(b.bps).into(),
            b.packets.to_string().into(),
            b.new_flows.to_string().into(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(26),
            Constraint::Length(9),
            Constraint::Length(6),
            Constraint::Length(24),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(12),
            Constraint::Length(10),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(title));
    f.render_widget(table, area);
}
