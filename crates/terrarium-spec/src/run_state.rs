//! A run's state: the same words for local runs, containers and jobs on compute targets, in the
//! CLI, the API and the web UI.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a run is. A job on a compute target takes its state from its engine, never from a
/// guess; a final state never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Submitted; the engine has not started it yet.
    Queued,
    Running,
    /// Ended with exit code 0.
    Completed,
    /// Ended with another exit code, or the engine says it failed.
    Failed,
    Cancelled,
    /// Stopped by its time limit.
    TimedOut,
    /// A node it ran on failed.
    NodeFailed,
    /// The engine no longer knows the job, and nothing says how it ended.
    Lost,
}

impl RunState {
    pub const ALL: &'static [RunState] = &[
        Self::Queued,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::TimedOut,
        Self::NodeFailed,
        Self::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::NodeFailed => "node_failed",
            Self::Lost => "lost",
        }
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }

    /// The state of a run that ended with `exit_code` and nothing else to say.
    pub fn from_exit_code(exit_code: i32) -> Self {
        if exit_code == 0 {
            Self::Completed
        } else {
            Self::Failed
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown run state `{}`", text.escape_debug()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(*state));
            assert_eq!(
                serde_json::to_string(state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!(!RunState::Running.is_final() && RunState::Lost.is_final());
    }
}
