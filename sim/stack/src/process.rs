//! Child processes of the stack: started from the built binaries, logging to files, stopped with
//! SIGTERM (then SIGKILL after a grace period), killed on drop so a failing test leaves nothing
//! behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::StackError;

/// Where the binaries are: `$SIGNER_BIN_DIR`, else the directory of the running executable
/// (or its parent, for test executables in `target/<profile>/deps`).
pub fn bin_dir() -> Result<PathBuf, StackError> {
    if let Some(dir) = std::env::var_os("SIGNER_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()
        .map_err(|e| StackError::Setup(format!("locating this executable: {e}")))?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().map(Path::to_path_buf).unwrap_or(dir);
    }
    Ok(dir)
}

/// The path of a binary, or a clear error telling how to build it.
pub fn binary(name: &str) -> Result<PathBuf, StackError> {
    let path = bin_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(StackError::Setup(format!(
            "{} not found; build the binaries first (`cargo build --workspace --bins`) or set SIGNER_BIN_DIR",
            path.display()
        )))
    }
}

/// A running child process.
pub struct Proc {
    pub name: &'static str,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(name: &'static str, mut command: Command, log: &Path) -> Result<Self, StackError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StackError::Setup(format!("{}: {e}", dir.display())))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| StackError::Setup(format!("{}: {e}", log.display())))?;
        let err = file.try_clone().map_err(|e| StackError::Setup(e.to_string()))?;
        let child = command
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| StackError::Setup(format!("starting {name}: {e}")))?;
        Ok(Self { name, child: Some(child), log: log.to_path_buf() })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all.get(all.len().saturating_sub(lines)..).unwrap_or_default().join("\n")
    }

    /// Errors (with the log tail) if the process has exited.
    pub fn check_running(&mut self) -> Result<(), StackError> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(StackError::Exited {
                name: self.name,
                status: status.to_string(),
                log: self.log_tail(30),
            });
        }
        Ok(())
    }

    /// Sends a signal (SIGTERM, SIGKILL, …).
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.pid().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        self.signal_child(&child, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL now (a crash, for fault-injection tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal_child(&self, child: &Child, signal: Signal) {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `ready` every 50 ms until it returns true, the process exits, or `timeout` passes.
pub fn wait_until(
    proc: &mut Proc,
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), StackError> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        proc.check_running()?;
        if Instant::now() >= deadline {
            return Err(StackError::Timeout { what: what.to_string(), log: proc.log_tail(30) });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
