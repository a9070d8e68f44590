//! Binary upgrade without a refused connection, as HAProxy's `-x` and Envoy's hot
//! restart do it: the running process starts the new binary and hands it its listening
//! sockets over a Unix socket (SCM_RIGHTS); the new process serves on them and says it
//! is ready; then the old one stops accepting and drains. The sockets stay open through
//! the hand-over (both processes hold them for a moment), so their accept queues are
//! never dropped, unlike a hand-over by SO_REUSEPORT, whose closing socket resets the
//! connections queued on it.
//!
//! The exchange, on a Unix socket the old process creates (mode 0600, in a directory
//! of its own) and names to the new one in [`ENV`]:
//! 1. new -> old: `sockets\n`;
//! 2. old -> new: one message, a JSON list of [`Handed`] with the descriptors in the
//!    same order as SCM_RIGHTS;
//! 3. new -> old: `ready\n` once it serves (or it exits, or the old one gives up).

use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Names the hand-over socket to a new process.
pub const ENV: &str = "GATEHOUSE_UPGRADE_SOCKET";

/// The most sockets one hand-over carries.
const MAX_SOCKETS: usize = 200;

/// How long the old process waits for the new one to be ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// What a handed socket was to the old process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Handed {
    /// The listener's name; `None` for the admin API.
    pub listener: Option<String>,
    /// The address as configured (port 0 stays 0).
    pub configured: SocketAddr,
    pub udp: bool,
}

/// Sockets a new process got from the old one, taken by the listeners that match
/// them as they bind; what no listener takes is closed with this.
#[derive(Default)]
pub struct Inherited {
    sockets: Mutex<Vec<(Handed, OwnedFd)>>,
}

impl Inherited {
    /// The socket for this listener, if the old process had one just like it.
    pub fn take(
        &self,
        listener: Option<&str>,
        configured: SocketAddr,
        udp: bool,
    ) -> Option<OwnedFd> {
        let mut s = self.sockets.lock().ok()?;
        let i = s.iter().position(|(h, _)| {
            h.listener.as_deref() == listener && h.configured == configured && h.udp == udp
        })?;
        Some(s.swap_remove(i).1)
    }
}

/// The new process's end of the exchange, kept to say `ready`.
pub struct Handshake(UnixStream);

impl Handshake {
    /// Tells the old process this one serves: it stops accepting and drains.
    pub fn ready(mut self) -> std::io::Result<()> {
        self.0.write_all(b"ready\n")
    }
}

/// In a process started by an upgrade ([`ENV`] set), fetches the old process's
/// sockets. `Ok(None)` in a process started any other way.
pub fn receive() -> Result<Option<(Inherited, Handshake)>, String> {
    let Some(path) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    let fail = |e: std::io::Error| format!("upgrade: taking over the sockets failed: {e}");
    let mut conn = UnixStream::connect(&path).map_err(fail)?;
    conn.write_all(b"sockets\n").map_err(fail)?;
    let mut text = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        &conn,
        &mut [IoSliceMut::new(&mut text)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| fail(e.into()))?;
    let mut fds = Vec::new();
    for msg in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = msg {
            fds.extend(rights);
        }
    }
    let handed: Vec<Handed> = serde_json::from_slice(&text[..got.bytes])
        .map_err(|e| format!("upgrade: the old process sent no socket list: {e}"))?;
    if handed.len() != fds.len() {
        return Err(format!(
            "upgrade: {} sockets listed but {} received",
            handed.len(),
            fds.len()
        ));
    }
    tracing::info!(
        sockets = fds.len(),
        "upgrade: took over the listening sockets"
    );
    let inherited = Inherited {
        sockets: Mutex::new(handed.into_iter().zip(fds).collect()),
    };
    Ok(Some((inherited, Handshake(conn))))
}

/// The old process's side: starts `command` (the new binary, with this process's
/// arguments), hands it `sockets`, and waits until it is ready. Returns its PID; on
/// any failure this process keeps serving and the error says why.
pub async fn hand_over(
    mut command: tokio::process::Command,
    sockets: Vec<(Handed, OwnedFd)>,
) -> Result<u32, String> {
    let dir = private_dir().map_err(|e| format!("upgrade: no private directory: {e}"))?;
    let path = dir.join("handover.sock");
    let result = async {
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| format!("upgrade: cannot listen on {}: {e}", path.display()))?;
        let mut child = command
            .env(ENV, &path)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("upgrade: cannot start the new binary: {e}"))?;
        let pid = child.id().unwrap_or(0);
        let talked = tokio::select! {
            r = talk(&listener, &sockets) => r,
            status = child.wait() => Err(match status {
                Ok(s) => format!("upgrade: the new process exited before it was ready ({s})"),
                Err(e) => format!("upgrade: lost the new process: {e}"),
            }),
            _ = tokio::time::sleep(READY_WITHIN) => {
                Err(format!("upgrade: the new process was not ready within {READY_WITHIN:?}"))
            }
        };
        if talked.is_err() {
            // A child that never got ready is ours to end.
            let _ = child.kill().await;
        }
        talked.map(|()| pid)
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Accepts the new process's connection, sends the sockets, waits for `ready`.
async fn talk(
    listener: &tokio::net::UnixListener,
    sockets: &[(Handed, OwnedFd)],
) -> Result<(), String> {
    let (conn, _) = listener
        .accept()
        .await
        .map_err(|e| format!("upgrade: accept failed: {e}"))?;
    let mut lines = tokio::io::BufReader::new(conn).lines();
    expect(&mut lines, "sockets").await?;
    // One small message on a fresh socket: the send buffer takes it whole.
    send_sockets(lines.get_ref().get_ref(), sockets)?;
    expect(&mut lines, "ready").await
}

/// Reads the next line, which must be `want`.
async fn expect(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::net::UnixStream>>,
    want: &str,
) -> Result<(), String> {
    match lines.next_line().await {
        Ok(Some(l)) if l == want => Ok(()),
        Ok(_) => Err(format!(
            "upgrade: the new process stopped before saying `{want}`"
        )),
        Err(e) => Err(format!("upgrade: waiting for `{want}`: {e}")),
    }
}

fn send_sockets(conn: &impl AsFd, sockets: &[(Handed, OwnedFd)]) -> Result<(), String> {
    if sockets.len() > MAX_SOCKETS {
        return Err(format!("upgrade: more than {MAX_SOCKETS} sockets"));
    }
    let list: Vec<&Handed> = sockets.iter().map(|(h, _)| h).collect();
    let text = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
    let fds: Vec<_> = sockets.iter().map(|(_, fd)| fd.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err("upgrade: the descriptors do not fit one message".into());
    }
    rustix::net::sendmsg(
        conn,
        &[IoSlice::new(&text)],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| format!("upgrade: sending the sockets failed: {e}"))?;
    Ok(())
}

/// A new directory only this user can enter, for the hand-over socket.
fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "gatehouse-upgrade-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// The command that starts the same binary with the same arguments, from the binary
/// path this process started from (`exe`), which may now hold a newer build.
pub fn same_command(exe: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(exe);
    c.args(std::env::args_os().skip(1));
    c
}
