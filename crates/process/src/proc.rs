//! One worker process: spawned in its own process group with a parent-death signal, its stdout
//! read and its stdin written with `poll(2)` and deadlines, its stderr captured, and killed
//! (whole process group) on every path out.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::log::{Capture, Sink};
use crate::protocol::{quote, MAX_HEADER_BYTES};

/// The longest a blocking wait lasts before the deadline and the halt flag are looked at again.
pub(crate) const SLICE: Duration = Duration::from_millis(20);

/// How long the stderr readers get to drain after their process is dead.
const SETTLE: Duration = Duration::from_millis(500);

/// A program, its arguments, working directory and environment.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
}

/// Which standard streams are pipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Streams {
    /// stdin and stdout carry the protocol; stderr is captured.
    Protocol,
    /// stdin is empty; stdout and stderr are both captured (`files` mode).
    Captured,
}

/// Why a wait on the worker's pipes ended without the data.
#[derive(Debug)]
pub(crate) enum Wait {
    /// The worker closed its stdout or stdin (it exited, most likely).
    Eof,
    /// The deadline passed.
    Timeout,
    /// A header line longer than [`MAX_HEADER_BYTES`].
    TooLong,
    /// The halt check said to stop (cancellation, or the pool is stopping).
    Halted,
    /// Any other I/O error.
    Io(String),
}

/// What [`Proc::idle_check`] found.
#[derive(Debug)]
pub(crate) enum Idle {
    /// The worker closed its stdout while it had nothing to answer.
    Exited,
    /// Bytes on stdout nobody asked for (quoted).
    Junk(String),
}

/// A running worker process and its pipes.
#[derive(Debug)]
pub(crate) struct Proc {
    child: Child,
    pgid: libc::pid_t,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    buf: Vec<u8>,
    start: usize,
    capture: Capture,
    status: Option<ExitStatus>,
}

/// Block SIGPIPE in the calling thread, so that a write to a worker that has gone away fails
/// with `EPIPE` instead of killing diffinv, whatever the host program's signal disposition.
/// (Workers get an empty signal mask: [`Proc::spawn`] resets it before `exec`.)
pub(crate) fn block_sigpipe() {
    // SAFETY: plain libc calls on a local, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// `status` in words: `exited with status 3`, `was killed by signal 11 (SIGSEGV)`.
pub(crate) fn describe(status: Option<ExitStatus>) -> String {
    let Some(s) = status else {
        return "exit status unknown".into();
    };
    if let Some(c) = s.code() {
        return format!("exited with status {c}");
    }
    if let Some(sig) = s.signal() {
        let name = match sig {
            libc::SIGHUP => " (SIGHUP)",
            libc::SIGINT => " (SIGINT)",
            libc::SIGQUIT => " (SIGQUIT)",
            libc::SIGILL => " (SIGILL)",
            libc::SIGABRT => " (SIGABRT)",
            libc::SIGBUS => " (SIGBUS)",
            libc::SIGFPE => " (SIGFPE)",
            libc::SIGKILL => " (SIGKILL)",
            libc::SIGSEGV => " (SIGSEGV)",
            libc::SIGPIPE => " (SIGPIPE)",
            libc::SIGTERM => " (SIGTERM)",
            _ => "",
        };
        return format!("was killed by signal {sig}{name}");
    }
    format!("ended ({s})")
}

/// Wait on `fds` until one is ready, the deadline passes or `halted()` says so, looking at both
/// every [`SLICE`].
fn poll(
    fds: &mut [libc::pollfd],
    deadline: Instant,
    halted: &dyn Fn() -> bool,
) -> Result<(), Wait> {
    loop {
        if halted() {
            return Err(Wait::Halted);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Wait::Timeout);
        }
        let left = (deadline - now).min(SLICE);
        let ms = left.as_millis().max(1) as libc::c_int;
        for f in fds.iter_mut() {
            f.revents = 0;
        }
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r > 0 {
            return Ok(());
        }
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Wait::Io(format!("poll: {e}")));
            }
        }
    }
}

const READY: libc::c_short = libc::POLLIN | libc::POLLHUP | libc::POLLERR;

impl Proc {
    /// Start `launch` as worker `worker` with the extra environment `env`, in a new process
    /// group, with `SIGKILL` as its parent-death signal.
    ///
    /// The parent-death signal fires when the *thread* that forked the child exits, not the
    /// process: call this only from a thread that lives as long as the worker (the pool's slot
    /// threads do), never from a short-lived helper thread.
    pub(crate) fn spawn(
        launch: &Launch,
        worker: usize,
        env: &[(&str, String)],
        streams: Streams,
        sink: &Arc<Sink>,
    ) -> std::io::Result<Proc> {
        let mut cmd = Command::new(&launch.program);
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(match streams {
                Streams::Protocol => Stdio::piped(),
                Streams::Captured => Stdio::null(),
            })
            // Its own process group: a terminal's Ctrl-C reaches diffinv only (which then
            // stops the workers in order), and one killpg reaches the worker's children too.
            .process_group(0);
        if let Some(d) = &launch.cwd {
            cmd.current_dir(d);
        }
        #[cfg(target_os = "linux")]
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // calls (sigemptyset, sigprocmask, prctl, getppid) on local data, and builds io::Errors
        // from raw OS codes, which does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                // The slot thread blocks SIGPIPE for itself; the worker starts with no signal
                // blocked (std resets SIGPIPE's disposition but not the mask).
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                #[cfg(target_os = "linux")]
                {
                    // SIGKILL the worker when diffinv dies, even by SIGKILL.
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0 as libc::c_ulong,
                        0 as libc::c_ulong,
                        0 as libc::c_ulong,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // diffinv died between fork and prctl: do not run orphaned.
                    if libc::getppid() != parent {
                        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                    }
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let pgid = child.id() as libc::pid_t;
        let mut capture = Capture::new();
        if let Some(e) = child.stderr.take() {
            capture.follow(e, worker, Arc::clone(sink));
        }
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        if streams == Streams::Captured {
            if let Some(o) = stdout.take() {
                capture.follow(o, worker, Arc::clone(sink));
            }
        }
        let p = Proc {
            child,
            pgid,
            stdin,
            stdout,
            buf: Vec::new(),
            start: 0,
            capture,
            status: None,
        };
        if let Some(s) = &p.stdin {
            // Non-blocking, so that a worker that stops reading cannot block diffinv past the
            // deadline (write_all polls instead).
            // SAFETY: fcntl on a file descriptor this struct owns.
            unsafe {
                let fd = s.as_raw_fd();
                let flags = libc::fcntl(fd, libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
                }
            }
        }
        Ok(p)
    }

    /// The last lines of the process's stderr, rendered for an error message.
    pub(crate) fn stderr(&self) -> String {
        self.capture.render()
    }

    /// How the process ended, in words (after [`kill`](Self::kill)).
    pub(crate) fn status(&self) -> String {
        describe(self.status)
    }

    /// Whether the process exited with status 0 (after [`kill`](Self::kill)).
    pub(crate) fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Read more of stdout into the buffer; the number of bytes read, 0 at end of file.
    fn fill(&mut self, want: usize) -> Result<usize, Wait> {
        let Some(out) = self.stdout.as_mut() else {
            return Ok(0);
        };
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        let n = want.clamp(64 * 1024, 8 << 20);
        self.buf.resize(old + n, 0);
        let r = loop {
            match out.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match r {
            Ok(k) => {
                self.buf.truncate(old + k);
                Ok(k)
            }
            Err(e) => {
                self.buf.truncate(old);
                Err(Wait::Io(format!("reading the worker's stdout: {e}")))
            }
        }
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    fn stdout_fd(&self) -> Result<libc::c_int, Wait> {
        self.stdout.as_ref().map(|o| o.as_raw_fd()).ok_or(Wait::Eof)
    }

    /// Wait until stdout is readable and read what is there.
    fn read_more(
        &mut self,
        want: usize,
        deadline: Instant,
        halted: &dyn Fn() -> bool,
    ) -> Result<(), Wait> {
        let mut fds = [libc::pollfd {
            fd: self.stdout_fd()?,
            events: libc::POLLIN,
            revents: 0,
        }];
        poll(&mut fds, deadline, halted)?;
        if fds[0].revents & READY != 0 && self.fill(want)? == 0 {
            return Err(Wait::Eof);
        }
        Ok(())
    }

    /// Write all of `data` to the worker's stdin by the deadline, reading its stdout into the
    /// buffer meanwhile (a worker may start answering before it has read everything).
    pub(crate) fn write_all(
        &mut self,
        mut data: &[u8],
        deadline: Instant,
        halted: &dyn Fn() -> bool,
    ) -> Result<(), Wait> {
        while !data.is_empty() {
            let Some(stdin) = self.stdin.as_ref() else {
                return Err(Wait::Eof);
            };
            let mut fds = [
                libc::pollfd {
                    fd: stdin.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.stdout_fd()?,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            poll(&mut fds, deadline, halted)?;
            if fds[1].revents & READY != 0 && self.fill(0)? == 0 {
                return Err(Wait::Eof);
            }
            if fds[0].revents & (libc::POLLOUT | libc::POLLERR | libc::POLLHUP) != 0 {
                let Some(stdin) = self.stdin.as_mut() else {
                    return Err(Wait::Eof);
                };
                match stdin.write(data) {
                    Ok(0) => return Err(Wait::Eof),
                    Ok(n) => data = &data[n..],
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Err(Wait::Eof),
                    Err(e) => return Err(Wait::Io(format!("writing to the worker's stdin: {e}"))),
                }
            }
        }
        Ok(())
    }

    /// Read one line of stdout (without its `\n` or `\r\n`) by the deadline.
    pub(crate) fn read_line(
        &mut self,
        deadline: Instant,
        halted: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, Wait> {
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.start + scanned..];
            if let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let end = self.start + scanned + i;
                let mut line = self.buf[self.start..end].to_vec();
                self.start = end + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            scanned = self.buffered();
            if scanned >= MAX_HEADER_BYTES {
                return Err(Wait::TooLong);
            }
            self.read_more(0, deadline, halted)?;
        }
    }

    /// Read exactly `n` bytes of stdout by the deadline.
    pub(crate) fn read_exact(
        &mut self,
        n: usize,
        deadline: Instant,
        halted: &dyn Fn() -> bool,
    ) -> Result<Vec<u8>, Wait> {
        while self.buffered() < n {
            let want = n - self.buffered();
            self.read_more(want, deadline, halted)?;
        }
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Ok(out)
    }

    /// Before a call: check that the worker is still there and has not written anything
    /// unasked.
    pub(crate) fn idle_check(&mut self) -> Result<(), Idle> {
        if self.buffered() > 0 {
            return Err(Idle::Junk(quote(&self.buf[self.start..])));
        }
        let Ok(fd) = self.stdout_fd() else {
            return Err(Idle::Exited);
        };
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: a valid one-element pollfd array; timeout 0 never blocks.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
        if r > 0 && fds[0].revents & READY != 0 {
            return match self.fill(0) {
                Ok(0) | Err(_) => Err(Idle::Exited),
                Ok(_) => Err(Idle::Junk(quote(&self.buf[self.start..]))),
            };
        }
        Ok(())
    }

    /// Whether the process has exited (without reaping it, so its process group id stays
    /// reserved until [`kill`](Self::kill)).
    fn exited(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        // SAFETY: waitid on our own child with WNOWAIT only inspects its state.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let r = libc::waitid(
                libc::P_PID,
                self.pgid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            );
            r == 0 && info.si_pid() != 0
        }
    }

    /// Wait for the process to exit by the deadline (`files` mode); `Ok` once it has, the
    /// status is then in [`status`](Self::status) after [`kill`](Self::kill).
    pub(crate) fn wait_exit(
        &mut self,
        deadline: Instant,
        halted: &dyn Fn() -> bool,
    ) -> Result<(), Wait> {
        let mut nap = Duration::from_micros(200);
        loop {
            if self.exited() {
                return Ok(());
            }
            if halted() {
                return Err(Wait::Halted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Wait::Timeout);
            }
            std::thread::sleep(nap.min(deadline - now));
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    }

    /// Give the process up to `grace` to exit by itself, then SIGKILL its whole process group,
    /// reap it and let its stderr drain. Idempotent.
    pub(crate) fn kill_after(&mut self, grace: Duration) {
        if self.status.is_some() {
            return;
        }
        let until = Instant::now() + grace;
        while !self.exited() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        // The leader is alive or a zombie (not reaped yet), so its pid still names this group:
        // the signal cannot reach an unrelated process. Children the worker forked die too.
        // SAFETY: killpg with a process group id we created.
        unsafe {
            libc::killpg(self.pgid, libc::SIGKILL);
        }
        self.stdin = None;
        self.status = self.child.wait().ok();
        self.stdout = None;
        self.capture.settle(SETTLE);
    }

    /// SIGKILL the process group at once (timeouts, cancellation, protocol violations).
    pub(crate) fn kill(&mut self) {
        self.kill_after(Duration::ZERO);
    }

    /// Orderly end: close stdin (the protocol's "no more calls"), wait up to `grace` for the
    /// worker to exit, then kill its process group (anything it left behind included).
    pub(crate) fn close(&mut self, grace: Duration) {
        self.stdin = None;
        self.kill_after(grace);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
