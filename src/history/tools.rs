//! Per tool, what the tools view shows: calls, errors and percentiles over the last hour,
//! day and week, when it was last called and by whom, and its week hour by hour.

use std::collections::BTreeMap;

use super::histogram::Histogram;
use super::store::{SLOT_MS, Slot};

const HOUR_SLOTS: u64 = 3_600_000 / SLOT_MS;
/// The windows, in slots: an hour, a day, a week.
pub const WINDOWS: [(&str, u64); 3] = [
    ("hour", HOUR_SLOTS),
    ("day", 24 * HOUR_SLOTS),
    ("week", 7 * 24 * HOUR_SLOTS),
];
/// Hours a chart shows.
pub const CHART_HOURS: usize = 7 * 24;

#[derive(Debug, Default, Clone)]
pub struct Window {
    pub calls: u64,
    pub errors: u64,
    pub durations: Histogram,
}

impl Window {
    fn add(&mut self, slot: &Slot) {
        self.calls += slot.calls;
        self.errors += slot.errors;
        self.durations.merge(&slot.histogram);
    }
}

/// One hour of a tool's chart.
#[derive(Debug, Default, Clone, Copy)]
pub struct Hour {
    pub calls: u64,
    pub errors: u64,
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct ToolStats {
    pub tool: String,
    pub windows: [Window; 3],
    pub last_ms: u64,
    pub last_client: Option<String>,
    /// Oldest first, the last [`CHART_HOURS`], the current one last.
    pub hours: Vec<Hour>,
}

/// The stats of every tool in `slots`, as of `now_ms`; the most called this week first.
pub fn stats(slots: Vec<Slot>, now_ms: u64) -> Vec<ToolStats> {
    let now_slot = now_ms / SLOT_MS;
    let now_hour = now_slot / HOUR_SLOTS;
    let mut by_tool: BTreeMap<String, (ToolStats, Vec<Histogram>)> = BTreeMap::new();
    for slot in slots {
        let (stats, hourly) = by_tool.entry(slot.tool.clone()).or_insert_with(|| {
            (
                ToolStats {
                    tool: slot.tool.clone(),
                    windows: Default::default(),
                    last_ms: 0,
                    last_client: None,
                    hours: vec![Hour::default(); CHART_HOURS],
                },
                vec![Histogram::default(); CHART_HOURS],
            )
        });
        let age = now_slot.saturating_sub(slot.slot);
        for (window, (_, slots)) in stats.windows.iter_mut().zip(WINDOWS) {
            if age < slots {
                window.add(&slot);
            }
        }
        if slot.last_ms >= stats.last_ms {
            stats.last_ms = slot.last_ms;
            stats.last_client = slot.last_client.clone();
        }
        let hours_ago = now_hour.saturating_sub(slot.slot / HOUR_SLOTS) as usize;
        if hours_ago < CHART_HOURS {
            let i = CHART_HOURS - 1 - hours_ago;
            stats.hours[i].calls += slot.calls;
            stats.hours[i].errors += slot.errors;
            hourly[i].merge(&slot.histogram);
        }
    }
    let mut tools: Vec<ToolStats> = by_tool
        .into_values()
        .map(|(mut stats, hourly)| {
            for (hour, durations) in stats.hours.iter_mut().zip(&hourly) {
                hour.p95_ms = durations.quantile(0.95);
            }
            stats
        })
        .collect();
    tools.sort_by(|a, b| {
        b.windows[2]
            .calls
            .cmp(&a.windows[2].calls)
            .then(a.tool.cmp(&b.tool))
    });
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(tool: &str, slot: u64, calls: u64, errors: u64, micros: u64) -> Slot {
        let mut histogram = Histogram::default();
        for _ in 0..calls {
            histogram.record(micros);
        }
        Slot {
            tool: tool.into(),
            slot,
            calls,
            errors,
            last_ms: slot * SLOT_MS,
            last_client: Some(format!("client at {slot}")),
            histogram,
        }
    }

    #[test]
    fn windows_and_hours_count_what_falls_in_them() {
        let now_slot = 100_000;
        let now_ms = now_slot * SLOT_MS + 1;
        let stats = stats(
            vec![
                slot("hello", now_slot, 3, 1, 1_000),
                slot("hello", now_slot - 20, 5, 0, 4_000),
                slot("hello", now_slot - 24 * HOUR_SLOTS - 1, 7, 7, 100_000),
                slot("rare", now_slot - 2, 1, 0, 10),
            ],
            now_ms,
        );
        assert_eq!(stats[0].tool, "hello", "the most called first");
        let hello = &stats[0];
        let calls: Vec<_> = hello.windows.iter().map(|w| w.calls).collect();
        assert_eq!(calls, [3, 8, 15]);
        assert_eq!(hello.windows[2].errors, 8);
        assert_eq!(hello.last_client.as_deref(), Some("client at 100000"));
        assert_eq!(hello.hours.iter().map(|h| h.calls).sum::<u64>(), 15);
        assert_eq!(hello.hours[CHART_HOURS - 1].calls, 3);
        assert!(hello.windows[2].durations.quantile(0.99).unwrap() >= 100.0);
    }
}
