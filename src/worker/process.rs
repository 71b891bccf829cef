//! A task's child process: how it ended, in words, and how to stop it.
//! Each task runs in a process group of its own, so a stop reaches what the
//! command started too (a shell's children), and a Ctrl-C meant for the
//! agent does not reach the tasks it lets finish.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use crate::client::workers::Outcome;

/// How long a task gets after SIGTERM before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// The outcome of a child that exited with `code`, or was ended by
/// `signal` (exactly one of them is set by the OS).
pub fn outcome(code: Option<i32>, signal: Option<i32>) -> Outcome {
    match (code, signal) {
        (Some(0), _) => Outcome {
            succeeded: true,
            exit_code: Some(0),
            condition: String::new(),
        },
        (Some(c), _) => Outcome {
            succeeded: false,
            exit_code: Some(c),
            condition: format!("exit code {c}"),
        },
        (None, Some(s)) => Outcome {
            succeeded: false,
            exit_code: None,
            condition: match signal_name(s) {
                Some(name) => format!("killed by signal {s} ({name})"),
                None => format!("killed by signal {s}"),
            },
        },
        (None, None) => Outcome {
            succeeded: false,
            exit_code: None,
            condition: "ended without an exit code or a signal".into(),
        },
    }
}

/// The outcome of an exit status.
pub fn outcome_of(status: ExitStatus) -> Outcome {
    outcome(status.code(), status.signal())
}

/// The outcome of a command that could not be started at all.
pub fn spawn_failure(program: &str, error: &std::io::Error) -> Outcome {
    Outcome {
        succeeded: false,
        exit_code: None,
        condition: format!("cannot start {program:?}: {error}"),
    }
}

fn signal_name(s: i32) -> Option<&'static str> {
    Some(match s {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return None,
    })
}

/// Sends `signal` to the process group `pgid` (a task's child leads its
/// own group, so its pid is the group's id). An already gone group is fine.
pub fn signal_group(pgid: u32, signal: i32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        // Never signal "every process" (-1) or our own group (0).
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::kill(-pgid, signal) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            tracing::warn!("kill(-{pgid}, {signal}): {e}");
        }
    }
}

/// Stops a task's process group: SIGTERM, then SIGKILL if the child has
/// not exited within `grace`. Returns how the child ended.
pub async fn stop(child: &mut tokio::process::Child, grace: Duration) -> Option<ExitStatus> {
    // The id is gone once the child is reaped: take it first.
    let pid = child.id();
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Some(pid) = pid {
        signal_group(pid, libc::SIGTERM);
    }
    let ended = tokio::time::timeout(grace, child.wait()).await;
    // Also what the child left behind in its group, or what ignored SIGTERM.
    if let Some(pid) = pid {
        signal_group(pid, libc::SIGKILL);
    }
    match ended {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_say_how_the_command_ended() {
        let ok = outcome(Some(0), None);
        assert!(ok.succeeded);
        assert_eq!(ok.exit_code, Some(0));
        assert_eq!(ok.condition, "");

        let three = outcome(Some(3), None);
        assert!(!three.succeeded);
        assert_eq!(three.exit_code, Some(3));
        assert_eq!(three.condition, "exit code 3");

        let killed = outcome(None, Some(9));
        assert!(!killed.succeeded);
        assert_eq!(killed.exit_code, None);
        assert_eq!(killed.condition, "killed by signal 9 (SIGKILL)");
        assert_eq!(
            outcome(None, Some(15)).condition,
            "killed by signal 15 (SIGTERM)"
        );
        assert_eq!(outcome(None, Some(63)).condition, "killed by signal 63");
    }

    #[test]
    fn a_command_that_cannot_start_fails_with_the_error() {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        let o = spawn_failure("nope", &e);
        assert!(!o.succeeded);
        assert_eq!(o.exit_code, None);
        assert!(o.condition.starts_with("cannot start \"nope\": "), "{o:?}");
    }

    #[tokio::test]
    async fn stop_ends_the_whole_group() {
        let mut child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let status = stop(&mut child, Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGTERM));
        assert!(!outcome_of(status).succeeded);
    }

    #[tokio::test]
    async fn stop_kills_a_child_that_ignores_sigterm() {
        let mut child = tokio::process::Command::new("sh")
            .args([
                "-c",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            ])
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        // Wait until the trap is in place.
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 6];
        tokio::io::AsyncReadExt::read_exact(&mut out, &mut buf)
            .await
            .unwrap();
        let status = stop(&mut child, Duration::from_millis(200)).await.unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
