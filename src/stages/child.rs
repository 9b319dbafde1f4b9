//! Child processes of command stages and reruns: `sh -c CMD` in its own process group, with
//! exactly the environment given (nothing inherited), a wall-clock limit, and bounded memory for
//! what it prints (a tail buffer; the stage's log files keep everything).
//!
//! Owns starting, waiting with a deadline, and stopping a process group (SIGTERM, then SIGKILL
//! after a grace period). Never reads auditai's own environment: callers pass every variable.

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a stopped process group gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// The bytes of a stream's tail kept for messages.
pub const TAIL_BYTES: usize = 2048;

/// Start `sh -c cmd` in `wdir` in a new process group with only `env`; stdin is empty, stdout
/// and stderr are piped (or discarded when `keep_stdout` is false).
pub fn spawn(
    cmd: &str,
    wdir: &Path,
    env: &BTreeMap<String, String>,
    keep_stdout: bool,
) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(wdir)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(if keep_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited (or was killed by a signal it was not sent by us).
    Status(ExitStatus),
    /// It ran past its time limit and was stopped.
    TimedOut(Duration),
    /// It was stopped because the run was interrupted.
    Stopped,
}

impl Exit {
    /// The exit code, when it exited normally.
    pub fn code(&self) -> Option<i32> {
        match self {
            Exit::Status(s) => s.code(),
            _ => None,
        }
    }

    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        matches!(self, Exit::Status(s) if s.success())
    }
}

/// Wait for `child`, stopping its process group when `timeout` passes or `interrupted()` turns
/// true.
pub fn wait(
    child: &mut Child,
    timeout: Option<Duration>,
    interrupted: &dyn Fn() -> bool,
) -> std::io::Result<Exit> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Exit::Status(status));
        }
        if let Some(limit) = timeout
            && start.elapsed() >= limit
        {
            stop_group(child);
            return Ok(Exit::TimedOut(limit));
        }
        if interrupted() {
            stop_group(child);
            return Ok(Exit::Stopped);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM the child's process group, SIGKILL it after [`GRACE`], and reap the child.
pub fn stop_group(child: &mut Child) {
    signal_group(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(child.id(), libc::SIGKILL);
    let _ = child.wait();
}

/// Send `sig` to the process group led by `pid`.
pub fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process group this process created; no memory is touched.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

/// Read `stream` to its end keeping only its last [`TAIL_BYTES`] bytes (as text).
pub fn tail_of(stream: impl Read) -> String {
    let mut tail: VecDeque<u8> = VecDeque::with_capacity(TAIL_BYTES);
    let mut reader = stream;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for &b in &buf[..n] {
                    if tail.len() == TAIL_BYTES {
                        tail.pop_front();
                    }
                    tail.push_back(b);
                }
            }
        }
    }
    let bytes: Vec<u8> = tail.into_iter().collect();
    String::from_utf8_lossy(&bytes).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_bounded() {
        let big = vec![b'x'; 10 * TAIL_BYTES];
        let mut s = big.clone();
        s.extend_from_slice(b"end");
        let t = tail_of(s.as_slice());
        assert_eq!(t.len(), TAIL_BYTES);
        assert!(t.ends_with("end"));
    }

    #[test]
    fn a_child_past_its_limit_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = spawn("sleep 30", dir.path(), &BTreeMap::new(), false).unwrap();
        let e = wait(&mut c, Some(Duration::from_millis(200)), &|| false).unwrap();
        assert_eq!(e, Exit::TimedOut(Duration::from_millis(200)));
    }
}
