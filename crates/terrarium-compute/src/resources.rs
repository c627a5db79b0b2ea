//! What a job asks for: nodes, CPUs, GPUs, memory and a time limit, parsed from the forms users
//! type (`--memory 8G`, `--time 2h`, `--time 1:30:00`).

use crate::ComputeError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Nodes, one task on each. At least 1.
    pub nodes: u32,
    /// CPUs per task.
    pub cpus: Option<u32>,
    /// GPUs per node.
    pub gpus: Option<u32>,
    /// Memory per node, in MiB.
    pub memory_mib: Option<u64>,
    /// The time limit, in seconds.
    pub time_seconds: Option<u64>,
}

impl Resources {
    /// From the CLI's flags; every value is checked here.
    pub fn parse(
        nodes: u32,
        cpus: Option<u32>,
        gpus: Option<u32>,
        memory: Option<&str>,
        time: Option<&str>,
    ) -> Result<Self, ComputeError> {
        if nodes == 0 {
            return Err(ComputeError::Resources {
                what: "--nodes",
                reason: "must be at least 1".into(),
            });
        }
        if cpus == Some(0) {
            return Err(ComputeError::Resources {
                what: "--cpus",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            nodes,
            cpus,
            gpus: gpus.filter(|&g| g > 0),
            memory_mib: memory
                .map(|m| {
                    parse_memory(m).map_err(|reason| ComputeError::Resources {
                        what: "--memory",
                        reason,
                    })
                })
                .transpose()?,
            time_seconds: time
                .map(|t| {
                    parse_duration(t).map_err(|reason| ComputeError::Resources {
                        what: "--time",
                        reason,
                    })
                })
                .transpose()?,
        })
    }
}

/// `512M`, `8G`, `1T`, `2048` (MiB): memory in MiB. Units are binary, as Slurm's are.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not an amount of memory like 512M, 8G or 1T"))?;
    let factor = match unit
        .trim_end_matches(['b', 'B'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" | "M" | "MI" => 1,
        "G" | "GI" => 1024,
        "T" | "TI" => 1024 * 1024,
        "K" | "KI" => {
            return Ok(number.div_ceil(1024).max(1));
        }
        _ => return Err(format!("`{text}`: the unit must be K, M, G or T")),
    };
    let mib = number
        .checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if mib == 0 {
        return Err(format!("`{text}` is no memory at all"));
    }
    Ok(mib)
}

/// `90s`, `30m`, `2h`, `1d`, `1h30m`, or Slurm's `[D-]HH:MM:SS` / `MM:SS` / minutes: seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration like 90s, 30m, 2h, 1h30m or 1:30:00");
    if text.is_empty() {
        return Err(bad());
    }
    let seconds = if text.contains(':') || text.contains('-') {
        let (days, clock) = match text.split_once('-') {
            Some((d, rest)) => (d.parse::<u64>().map_err(|_| bad())?, rest),
            None => (0, text),
        };
        let parts: Vec<u64> = clock
            .split(':')
            .map(|p| p.parse::<u64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let clock = match parts.as_slice() {
            [h, m, s] => h * 3600 + m * 60 + s,
            [m, s] if !text.contains('-') => m * 60 + s,
            [h, m] => h * 3600 + m * 60,
            [h] => h * 3600,
            _ => return Err(bad()),
        };
        days * 86_400 + clock
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        // Slurm reads a bare number as minutes.
        text.parse::<u64>().map_err(|_| bad())? * 60
    } else {
        let mut total = 0u64;
        let mut number = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n: u64 = number.parse().map_err(|_| bad())?;
            total += n * unit;
            number.clear();
        }
        if !number.is_empty() {
            return Err(bad());
        }
        total
    };
    if seconds == 0 {
        return Err(format!("`{text}` is no time at all"));
    }
    Ok(seconds)
}

/// Seconds as Slurm's `D-HH:MM:SS`, rounded up to whole minutes (Slurm's granularity).
pub fn slurm_time(seconds: u64) -> String {
    let minutes = seconds.div_ceil(60);
    let (days, rest) = (minutes / 1440, minutes % 1440);
    format!("{days}-{:02}:{:02}:00", rest / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory() {
        assert_eq!(parse_memory("8G"), Ok(8192));
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("512mb"), Ok(512));
        assert_eq!(parse_memory("2048"), Ok(2048));
        assert_eq!(parse_memory("1T"), Ok(1024 * 1024));
        assert!(parse_memory("8X").is_err());
        assert!(parse_memory("G").is_err());
        assert!(parse_memory("0G").is_err());
        assert!(parse_memory("99999999999999999999T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("1:30:00"), Ok(5400));
        assert_eq!(parse_duration("2-00:00:00"), Ok(172_800));
        assert_eq!(parse_duration("10"), Ok(600));
        assert_eq!(parse_duration("5:00"), Ok(300));
        for bad in ["", "2x", "h", "1h30", "0s", "a:b"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(slurm_time(90), "0-00:02:00");
        assert_eq!(slurm_time(7200), "0-02:00:00");
        assert_eq!(slurm_time(90_000), "1-01:00:00");
    }
}
