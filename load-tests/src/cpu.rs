//! CPU time from `/proc`: the whole machine's, and the share of each part of the stack
//! (the gateway, PostgreSQL, the simulator, loadgen itself), so that a run can say what
//! one flow cost in CPU, all processes counted, and where it went.

use serde::Serialize;

/// `/proc` counts CPU time in USER_HZ ticks, 100 per second on Linux whatever the
/// kernel's own tick rate.
const TICKS_PER_S: f64 = 100.0;

/// CPU time used so far, in ticks: by the machine (every process, the kernel's
/// interrupts too) and by each part of the stack.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub machine: u64,
    pub gateway: u64,
    pub postgres: u64,
    pub simulator: u64,
    pub loadgen: u64,
}

/// The CPU a measured window cost, per completed flow and in all.
#[derive(Debug, Clone, Serialize)]
pub struct CpuReport {
    /// CPU time per completed flow, in microseconds: every process on the machine.
    pub per_flow_us: f64,
    /// … of it, by part (`other` is the rest of the machine).
    pub gateway_us: f64,
    pub postgres_us: f64,
    pub simulator_us: f64,
    pub loadgen_us: f64,
    pub other_us: f64,
    /// Cores busy on average over the window (of `cores`).
    pub cores_busy: f64,
    pub cores: usize,
}

/// A process's own CPU time (user + system), and that of its children it waited for.
fn process_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), so utime (14) is index 11 here.
    let n = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some((n(11)? + n(12)?, n(13)? + n(14)?))
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

fn machine_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    Some(
        v.iter()
            .enumerate()
            .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
            .map(|(_, t)| t)
            .sum(),
    )
}

/// The CPU used so far. `gateways`: the gateway processes loadgen started (none when it
/// drives a gateway it did not start: then their time is in `other`). PostgreSQL and
/// the simulator are found by name: every `postgres` process (its backends, and through
/// the postmaster the ones that already exited) and every `carrier-sim`.
pub fn sample(gateways: &[u32]) -> Sample {
    let mut s = Sample {
        machine: machine_ticks().unwrap_or(0),
        loadgen: process_ticks(std::process::id()).map_or(0, |(own, _)| own),
        ..Sample::default()
    };
    for pid in gateways {
        s.gateway += process_ticks(*pid).map_or(0, |(own, _)| own);
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return s;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        match comm(pid).as_deref() {
            Some("postgres") => {
                if let Some((own, children)) = process_ticks(pid) {
                    // Only the postmaster waits for backends: its children's time is
                    // theirs after they exit, never counted twice.
                    s.postgres += own + children;
                }
            }
            Some("carrier-sim") => {
                s.simulator += process_ticks(pid).map_or(0, |(own, _)| own);
            }
            _ => {}
        }
    }
    s
}

/// What the window from `before` to `after` cost per completed flow.
pub fn report(before: &Sample, after: &Sample, flows: u64, window_s: f64) -> Option<CpuReport> {
    if flows == 0 || window_s <= 0.0 || after.machine <= before.machine {
        return None;
    }
    let us = |a: u64, b: u64| {
        (b.saturating_sub(a) as f64 / TICKS_PER_S * 1e6 / flows as f64 * 10.0).round() / 10.0
    };
    let machine = us(before.machine, after.machine);
    let gateway = us(before.gateway, after.gateway);
    let postgres = us(before.postgres, after.postgres);
    let simulator = us(before.simulator, after.simulator);
    let loadgen = us(before.loadgen, after.loadgen);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Some(CpuReport {
        per_flow_us: machine,
        gateway_us: gateway,
        postgres_us: postgres,
        simulator_us: simulator,
        loadgen_us: loadgen,
        other_us: ((machine - gateway - postgres - simulator - loadgen).max(0.0) * 10.0).round()
            / 10.0,
        cores_busy: ((after.machine - before.machine) as f64 / TICKS_PER_S / window_s * 100.0)
            .round()
            / 100.0,
        cores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cpu_time_is_read_and_grows() {
        let before = sample(&[]);
        // Burn a little CPU.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(120) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = sample(&[]);
        assert!(after.machine > before.machine, "{before:?} {after:?}");
        assert!(after.loadgen > before.loadgen, "{before:?} {after:?}");
        let r = report(&before, &after, 10, 0.12).unwrap();
        assert!(r.per_flow_us >= r.loadgen_us && r.loadgen_us > 0.0, "{r:?}");
    }

    #[test]
    fn a_process_stat_line_with_spaces_in_its_name_is_read() {
        // Our own line is read whatever our name is; a missing process is none.
        assert!(process_ticks(std::process::id()).is_some());
        assert!(process_ticks(u32::MAX).is_none());
    }
}
