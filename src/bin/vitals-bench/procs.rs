//! The servers the bench starts (each on loopback with its own temp dir) and what it reads off
//! running processes: memory, CPU time, sizes on disk. Every server is stopped when its guard
//! is dropped, so a failure or Ctrl-C leaves nothing running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// What must be stopped or removed if the bench is interrupted: a Ctrl-C may arrive while the
/// main task is blocked in a long step (PostgreSQL's COPY), so the signal task cleans up from
/// this registry instead of waiting for the guards to drop.
#[derive(Default)]
struct Live {
    pids: Vec<u32>,
    pg_data_dirs: Vec<PathBuf>,
    temp_dirs: Vec<PathBuf>,
}

static LIVE: std::sync::Mutex<Live> = std::sync::Mutex::new(Live {
    pids: Vec::new(),
    pg_data_dirs: Vec::new(),
    temp_dirs: Vec::new(),
});

fn live(f: impl FnOnce(&mut Live)) {
    if let Ok(mut l) = LIVE.lock() {
        f(&mut l);
    }
}

pub fn track_pg(data_dir: &Path, running: bool) {
    live(|l| {
        l.pg_data_dirs.retain(|d| d != data_dir);
        if running {
            l.pg_data_dirs.push(data_dir.to_path_buf());
        }
    });
}

pub fn track_temp_dir(dir: &Path) {
    live(|l| l.temp_dirs.push(dir.to_path_buf()));
}

/// Stops every server still running and removes the temp dirs (the Ctrl-C path).
pub fn stop_everything() {
    let Ok(mut l) = LIVE.lock() else {
        return;
    };
    for pid in l.pids.drain(..) {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    for dir in l.pg_data_dirs.drain(..) {
        let _ = as_user("postgres", "/usr/lib/postgresql/15/bin/pg_ctl")
            .arg("-D")
            .arg(&dir)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
    // Give the killed servers a moment to let go of their files.
    std::thread::sleep(Duration::from_millis(500));
    for dir in l.temp_dirs.drain(..) {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Runs a command to completion; a failure carries its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("while starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(out)
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A command run as `user` when the bench runs as root (PostgreSQL refuses to run as root).
pub fn as_user(user: &str, program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Bytes under a path (files only, not following links).
pub fn disk_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| disk_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A field of /proc/PID/status in kB.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) are space separated.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Waits until a process has used less than 5% of a core over a second (its background work
/// after a load is done), at most `max`. Returns how long it took.
pub fn wait_idle(pid: u32, max: Duration) -> Duration {
    let started = Instant::now();
    let mut last = cpu_ticks(pid).unwrap_or(0);
    while started.elapsed() < max {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_ticks(pid).unwrap_or(0);
        // 100 ticks per second on Linux: 5 ticks is 5% of one core.
        if now.saturating_sub(last) <= 5 {
            break;
        }
        last = now;
    }
    started.elapsed()
}

/// Samples a process's resident memory every 50 ms; `take_peak` returns the highest value
/// since the last call (so each phase gets its own peak).
pub struct RssSampler {
    peak_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak_kb.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kb) = status_kb(pid, "VmRSS:") {
                    p.fetch_max(kb, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler {
            peak_kb,
            stop,
            thread: Some(thread),
        }
    }

    pub fn take_peak_mb(&self) -> f64 {
        self.peak_kb.swap(0, Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks the kernel to drop its page cache (needs root; returns whether it worked), so a cold
/// run reads from disk.
pub fn drop_page_cache() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// A child server process, stopped (SIGTERM, then SIGKILL after `grace`) when dropped.
pub struct ChildServer {
    pub name: &'static str,
    child: Option<Child>,
    grace: Duration,
}

impl ChildServer {
    pub fn spawn(
        name: &'static str,
        cmd: &mut Command,
        log: &Path,
        grace: Duration,
    ) -> anyhow::Result<ChildServer> {
        // Appended, not truncated: a server restarted (after compaction, for cold runs) keeps
        // the earlier runs' lines (and what they printed at exit) in one log.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("while starting {name}: {cmd:?}"))?;
        let pid = child.id();
        live(|l| l.pids.push(pid));
        Ok(ChildServer {
            name,
            child: Some(child),
            grace,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Fails if the process has already exited (it could not start).
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!("{} exited at start ({status})", self.name);
        }
        Ok(())
    }

    /// Graceful stop; returns once the process has exited.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        live(|l| l.pids.retain(|p| *p != pid));
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `url` until it answers 200, at most `max`; returns the time it took.
pub async fn wait_http_ok(
    client: &reqwest::Client,
    url: &str,
    max: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > max {
            bail!("{url} did not answer 200 within {max:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A temp dir the given user may write (PostgreSQL's data dir must belong to it).
pub fn owned_temp_dir(parent: &Path, name: &str, user: &str) -> anyhow::Result<PathBuf> {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir)?;
    if is_root() {
        run(Command::new("chown").args([&format!("{user}:"), &dir.display().to_string()]))?;
    }
    Ok(dir)
}

/// One request of a load: its body, the bearer token it carries (if any) and how many points
/// it holds.
#[derive(Clone)]
pub struct Upload {
    pub bearer: Option<String>,
    pub body: Vec<u8>,
    pub points: usize,
}

/// POSTs every upload to `url` over `connections` connections (each takes the next one as it
/// finishes); returns the points acknowledged with a 2xx. Any other answer fails the load.
pub async fn post_all(
    url: &str,
    content_type: &'static str,
    mut uploads: Vec<Upload>,
    connections: usize,
) -> anyhow::Result<usize> {
    uploads.reverse(); // taken from the end: in the given order
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(uploads));
    let client = reqwest::Client::new();
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (queue, client, url) = (queue.clone(), client.clone(), url.to_string());
        workers.push(tokio::spawn(async move {
            let mut sent = 0usize;
            loop {
                let Some(upload) = queue.lock().await.pop() else {
                    break;
                };
                let mut request = client
                    .post(&url)
                    .header("content-type", content_type)
                    .body(upload.body);
                if let Some(token) = &upload.bearer {
                    request = request.bearer_auth(token);
                }
                let r = request.send().await?;
                let status = r.status();
                if !status.is_success() {
                    bail!(
                        "{url} answered {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                sent += upload.points;
            }
            anyhow::Ok(sent)
        }));
    }
    let mut total = 0;
    for w in workers {
        total += w.await??;
    }
    Ok(total)
}
